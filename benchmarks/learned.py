"""Learned Gauss-Newton cost: training samples/s, and inference per phantom against DRI per phantom.

Usage: python benchmarks/learned.py [--spacing 4.0] [--image-size 32] [--batch 16] [--iterations 5]
                                    [--width 0.25] [--basis-size 24] [--damping decaying|constant]
                                    [--jacobian-rank R]
                                    [--dri-spacing 2.0] [--fine-data-spacing 1.5] [--repeats 3]

Simulates `--batch` phantoms of the `paper` distribution on a disk mesh of `--spacing` mm (the
`small` scale's: 4 mm, 736 nodes; 32×32 images), then times on the same data and mesh:
- `lgn` inference, batched (vmap over phantoms, the K iterations in one jit), per phantom;
- `lgn` symmetrised (`SymmetryAveraged`: its images averaged over the disk's 8 symmetries, the
  `nirst reproduce` row "LGN symmetrised"), per phantom;
- one `lgn` training step (linearised gradients, and exact through the solves), samples/s;
- with `--jacobian-rank R`: those for the rank-R directions, and beside them the exact
  directions' inference and training (linearised gradients);
- DRI as the study runs it (`GaussNewtonMethod`: 24×24 pixel basis, up to 10 Gauss-Newton
  steps, float64), vmapped over the same batch, per phantom: on the data's mesh, and "DRI at
  its best" (issue #16, the DRI the learned methods' accuracy is measured against) on the
  `--dri-spacing` mesh (the default 2 mm reconstruction mesh) with the same phantoms simulated
  on the finer `--fine-data-spacing` mesh and recalibrated to it (`Recalibrated`), as the
  study's fine-mesh set: its Gauss-Newton stops when converged, so its time depends on the
  data, and data from a finer mesh is what it meets there.
Prints one side-by-side table (lgn / DRI time per phantom as ratios against both DRI rows).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from flax import nnx

jax.config.update("jax_enable_x64", True)  # DRI in float64, as the study runs it; the network stays float32

sys.path.insert(0, str(Path(__file__).parent))
from forward import best_time  # noqa: E402
from _summary import record  # noqa: E402

from nirst_jax.datasets import Dataset, SimulationConfig, simulate_dataset  # noqa: E402
from nirst_jax.learned import build_network  # noqa: E402
from nirst_jax.models import LGN_DAMPINGS, ModelSpec, normalise_mri  # noqa: E402
from nirst_jax.phantoms import phantom_config  # noqa: E402
from nirst_jax.evaluation import GaussNewtonMethod, Recalibrated, SymmetryAveraged  # noqa: E402
from nirst_jax.geometry import Symmetries  # noqa: E402
from nirst_jax.training import Steps, initial_state  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spacing", type=float, default=4.0, help="mesh spacing (mm) of data, lgn and DRI")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--basis-size", type=int, default=ModelSpec.basis_size, help="lgn's Gauss-Newton basis per side")
    parser.add_argument("--damping", choices=LGN_DAMPINGS, default="decaying", help="lgn's damping schedule")
    parser.add_argument("--jacobian-rank", type=int, default=None, help="lgn's Jacobian rank (default: exact)")
    parser.add_argument("--dri-spacing", type=float, default=2.0, help="mesh spacing (mm) of 'DRI at its best'")
    parser.add_argument("--fine-data-spacing", type=float, default=1.5,
                        help="mesh spacing (mm) of the data 'DRI at its best' reconstructs (< --dri-spacing)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.fine_data_spacing < args.dri_spacing:
        parser.error(f"--fine-data-spacing ({args.fine_data_spacing}) must be < --dri-spacing ({args.dri_spacing}): "
                     "data from the reconstruction mesh itself would be an inverse crime in DRI's favour")

    config = SimulationConfig(phantoms=phantom_config("paper"), mesh_spacing_mm=args.spacing, image_size=args.image_size)
    with tempfile.TemporaryDirectory() as folder:
        # Every phantom in the training split, so the store has normalisation statistics.
        dataset = Dataset(simulate_dataset(Path(folder) / "data", config, max(args.batch * 2, 16), seed=0, progress=False))
        indices = dataset.indices("train")[: args.batch]
        ln_amplitude = dataset.read("ln_amplitude", indices)
        mri = dataset.read("mri", indices)
        targets = dataset.read("targets", indices)
        normalisation, mesh, mask = dataset.normalisation, dataset.mesh, dataset.image_mask
        fine_config = dataclasses.replace(config, mesh_spacing_mm=args.fine_data_spacing)
        fine_data = Dataset(simulate_dataset(Path(folder) / "fine", fine_config, max(args.batch * 2, 16), seed=0, progress=False))
        fine_ln_amplitude, fine_mri = fine_data.read("ln_amplitude", indices), fine_data.read("mri", indices)
        fine_reference = fine_data.reference
    batch = len(indices)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); mesh {mesh.n_nodes} nodes, "
          f"{args.image_size}² images, batch {batch}, K = {args.iterations}")

    times, rates = [], []  # (name, seconds per phantom), (name, samples/s)
    signals = jnp.asarray(normalisation.signals(ln_amplitude), jnp.float32)
    batch_data = {"signals": signals, "mri": jnp.asarray(mri), "targets": jnp.asarray(targets)}
    # With --jacobian-rank, the exact directions are timed beside it (linearised gradients only).
    variants = [(args.jacobian_rank, ("linearised", "exact"))]
    if args.jacobian_rank is not None:
        variants.append((None, ("linearised",)))
    for rank, gradient_modes in variants:
        label = "lgn" if args.jacobian_rank is None else ("lgn, exact directions" if rank is None else f"lgn, rank {rank}")
        for gradients in gradient_modes:
            spec = ModelSpec("lgn", image_size=args.image_size, width=args.width, iterations=args.iterations,
                             basis_size=args.basis_size, gradients=gradients, damping=args.damping, jacobian_rank=rank)
            network = build_network(spec, 0, config, normalisation, mesh=mesh)
            if gradients == "linearised":
                apply = nnx.jit(lambda n, s, m: n(s, m))
                normalised = normalise_mri(jnp.asarray(mri), mask)
                jax.block_until_ready(apply(network, signals, normalised))
                seconds = best_time(lambda: jax.block_until_ready(apply(network, signals, normalised)), args.repeats)
                times.append((f"{label} inference per phantom", seconds / batch))

                class Network:
                    """The jitted network with the method interface (ln A, MRI) → images."""
                    image_mask = mask

                    def __call__(self, ln_a, images, network=network, apply=apply):
                        inputs = jnp.asarray(normalisation.signals(ln_a), jnp.float32), normalise_mri(jnp.asarray(images), mask)
                        return normalisation.images(jax.block_until_ready(apply(network, *inputs)))

                averaged = SymmetryAveraged(Network(), Symmetries.of(config.measurement_setup()), normalisation.reference)
                averaged(ln_amplitude, mri)  # compile
                seconds = best_time(lambda: averaged(ln_amplitude, mri), args.repeats)
                times.append((f"{label} symmetrised ({len(averaged.symmetries)} symmetries) inference per phantom",
                              seconds / batch))
            optimiser = optax.adam(1e-4)
            graphdef, state = initial_state(network, optimiser)
            steps = Steps(graphdef, optimiser, normalisation, mask)
            holder = {"state": jax.block_until_ready(steps.train(state, batch_data, jnp.float32(0)))}

            def step():
                holder["state"] = jax.block_until_ready(steps.train(holder["state"], batch_data, jnp.float32(0)))

            rates.append((f"{label} training, {gradients} gradients: samples/s", batch / best_time(step, args.repeats)))

    dri = GaussNewtonMethod(mesh, config.measurement_setup(), config.wavelengths_nm, batch_size=batch, progress=False)
    dri(ln_amplitude, mri)  # compile
    dri_seconds = best_time(lambda: dri(ln_amplitude, mri), args.repeats) / batch
    fine_mesh = config.mesh(args.dri_spacing)
    fine = GaussNewtonMethod(fine_mesh, config.measurement_setup(), config.wavelengths_nm, batch_size=batch, progress=False)
    best = Recalibrated(fine, fine_reference, config.reference_ln_amplitude(fine_mesh))
    best(fine_ln_amplitude, fine_mri)  # compile
    best_seconds = best_time(lambda: best(fine_ln_amplitude, fine_mri), args.repeats) / batch

    print(f"\nDRI: on the data's {args.spacing:g} mm mesh ({mesh.n_nodes} nodes); at its best on the "
          f"{args.dri_spacing:g} mm mesh ({fine_mesh.n_nodes} nodes), the phantoms simulated on a "
          f"{args.fine_data_spacing:g} mm mesh and recalibrated to it")
    header = f"{'quantity':<84}{'lgn':>10}{'DRI':>10}{'lgn/DRI':>9}{'DRI best':>10}{'lgn/best':>9}"
    print(header)
    for name, value in times:
        print(f"{name + ' (s)':<84}{value:>10.4f}{dri_seconds:>10.4f}{value / dri_seconds:>9.2f}"
              f"{best_seconds:>10.4f}{value / best_seconds:>9.2f}")
        record("learned", name, value, dri_seconds, "s", "DRI per phantom")
        record("learned", name + " vs DRI at its best", value, best_seconds, "s", "DRI at its best per phantom")
    for name, value in rates:
        print(f"{name:<84}{value:>10.1f}")
        record("learned", name, value, None, "samples/s")


if __name__ == "__main__":
    main()
