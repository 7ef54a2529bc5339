"""Training-step throughput: Z-Net and Y-Net, data-only vs hybrid (data + physics loss).

Usage: python benchmarks/train.py [--batch 16] [--steps 5] [--spacing 2.0] [--models znet,ynet]

Synthetic batches of the study's shapes (9 × 16 × 15 signals, 100 × 100 MRI and targets) so
no dataset is needed; the physics loss re-simulates the predictions on a disk mesh of the
given spacing (2.0 mm = 2850 nodes, the default simulation mesh). Prints samples/s, the
hybrid / data-only step-time ratio (target ≤ 2 on a GPU), and the time 200 epochs over
14 000 samples would take against the study's 3.9 h (Z-Net) and 7.2 h (Y-Net) on two
RTX 2080 GPUs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).parent))
from forward import best_time  # noqa: E402
from _summary import record  # noqa: E402

from nirst_jax.datasets import Normalisation  # noqa: E402
from nirst_jax.geometry import MeasurementSetup  # noqa: E402
from nirst_jax.mesh import disk_mesh  # noqa: E402
from nirst_jax.models import ModelSpec  # noqa: E402
from nirst_jax.physics import PAPER_WAVELENGTHS_NM  # noqa: E402
from nirst_jax.training import PhysicsLoss, Steps, initial_state  # noqa: E402

STUDY_HOURS = {"znet": 3.9, "ynet": 7.2, "znet-nomri": float("nan")}
SAMPLES = 200 * 14_000  # 200 epochs over the study's 70 % training split of 20 000


def synthetic_batch(batch: int, normalisation: Normalisation, mask: np.ndarray, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    targets = normalisation.images(jnp.asarray(rng.normal(0, 0.3, (batch, 3, 100, 100)), jnp.float32))
    return {
        "signals": jnp.asarray(rng.normal(size=(batch, 9, 16, 15)), jnp.float32),
        "mri": jnp.asarray(np.where(mask, 50 + 30 * (rng.random((batch, 100, 100)) > 0.9), 0), jnp.float32),
        "targets": jnp.where(mask, targets, 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement (median of 3)")
    parser.add_argument("--spacing", type=float, default=2.0, help="physics mesh spacing (mm)")
    parser.add_argument("--models", default="znet,ynet")
    parser.add_argument("--width", type=float, default=1.0)
    args = parser.parse_args()

    mesh = disk_mesh(41.0, args.spacing)
    from nirst_jax.physics import SpectralForwardModel

    reference = SpectralForwardModel.create(mesh)(jnp.broadcast_to(jnp.array([16.0, 6.0, 45.0])[:, None], (3, mesh.n_nodes)).astype(jnp.float32))
    normalisation = Normalisation(
        reference=jnp.asarray(reference, jnp.float32),
        signal_mean=jnp.zeros(9),
        signal_std=jnp.ones(9),
        target_mean=jnp.array([16.0, 6.0, 45.0]),
        target_std=jnp.array([6.0, 2.5, 17.0]),
    )
    physics = PhysicsLoss.create(
        mesh, MeasurementSetup.disk(), normalisation, reference_chromophores=[16.0, 6.0, 45.0], wavelengths_nm=PAPER_WAVELENGTHS_NM
    )
    mask = np.asarray(physics.interpolation.mask)
    batch = synthetic_batch(args.batch, normalisation, mask)
    device = jax.devices()[0]
    print(f"device: {device.device_kind} ({jax.default_backend()}), batch {args.batch}, physics mesh {mesh.n_nodes} nodes")
    header = f"{'model':<11}{'data-only samples/s':>21}{'hybrid samples/s':>18}{'hybrid/data time':>18}{'200 ep × 14k (data)':>22}{'study':>8}{'ratio':>8}"
    print(header)
    for name in args.models.split(","):
        spec = ModelSpec(name, width=args.width)
        rates = {}
        for kind, loss in (("data", None), ("hybrid", physics)):
            optimiser = optax.adam(0.005)
            graphdef, state = initial_state(spec.build(0), optimiser)
            steps = Steps(graphdef, optimiser, normalisation, mask, physics=loss)
            weight = jnp.float32(1.0 if loss is not None else 0.0)
            holder = {"state": steps.train(state, batch, weight)}  # compile

            def run():
                s = holder["state"]
                for _ in range(args.steps):
                    s = steps.train(s, batch, weight)
                holder["state"] = jax.block_until_ready(s)

            rates[kind] = args.steps * args.batch / best_time(run, 3)
        hours = SAMPLES / rates["data"] / 3600
        study = STUDY_HOURS[name]
        print(
            f"{name:<11}{rates['data']:>21.1f}{rates['hybrid']:>18.1f}{rates['data'] / rates['hybrid']:>18.2f}"
            f"{hours:>20.2f} h{study:>7.1f}h{hours / study:>8.2f}"
        )
        record("train", f"{name} samples/s data-only, batch {args.batch}", rates["data"], None, "samples/s")
        record("train", f"{name} samples/s hybrid, batch {args.batch}", rates["hybrid"], None, "samples/s")
        record("train", f"{name} hybrid step time / data-only", rates["data"] / rates["hybrid"], None, "×")
        record("train", f"{name} 200 epochs × 14k, data-only", hours, study, "h", "the study (2 × RTX 2080)")


if __name__ == "__main__":
    main()
