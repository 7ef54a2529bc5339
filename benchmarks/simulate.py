"""Dataset generation throughput: nirst-jax (sharded, jit, warm) vs a SciPy SuperLU loop.

For the paper phantom distribution, prints side by side:

- ours: phantoms/s of `ShardedGenerator` (sampling, area-weighted rasterisation of truth and
  MRI, two forward solves — the phantom and its homogeneous background — and noise, for 9
  wavelengths × 16 sources), after compilation, and the end-to-end `simulate_dataset` rate
  including compilation, checksums and writing the store;
- baseline: per phantom, SciPy SuperLU factorisation + solves of the same two forward problems
  (our FEM matrices; rasterisation and writing not counted, which favours the baseline);
- the projected wall time for 20 000 phantoms (the end-to-end run's compile counted once, the
  rest scaled by count).

Run: `python benchmarks/simulate.py [--count 64] [--mesh-spacing 2.0] [--device-batch N]`.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import nirst_jax  # noqa: F401  (sets XLA flags before JAX starts)
import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from forward import SuperLUBaseline  # noqa: E402
from _summary import record  # noqa: E402

from nirst_jax.datasets import ShardedGenerator, PhantomSimulator, SimulationConfig, simulate_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=64, help="phantoms timed (ours)")
    parser.add_argument("--baseline-count", type=int, default=8, help="phantoms timed (SciPy)")
    parser.add_argument("--mesh-spacing", type=float, default=2.0)
    parser.add_argument("--device-batch", type=int, default=None)
    parser.add_argument("--precision", choices=("float32", "float64"), default="float32")
    args = parser.parse_args()
    if args.precision == "float64":
        jax.config.update("jax_enable_x64", True)

    config = SimulationConfig(mesh_spacing_mm=args.mesh_spacing, precision=args.precision)
    simulator = PhantomSimulator.create(config)
    generator = ShardedGenerator(simulator, seed=0, device_batch=args.device_batch)
    print(
        f"devices: {jax.device_count()} × {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{platform.processor() or platform.machine()}"
    )
    print(
        f"paper config, mesh {simulator.model.fem.n_nodes} nodes, {args.precision}, 9 λ × 16 × 15, "
        f"global batch {generator.global_batch}"
    )

    start = time.perf_counter()
    generator(np.arange(generator.global_batch))
    compile_time = time.perf_counter() - start
    count = -(-args.count // generator.global_batch) * generator.global_batch
    start = time.perf_counter()
    samples = generator(np.arange(count))
    ours = count / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        simulate_dataset(Path(folder) / "store", config, count, progress=False, device_batch=args.device_batch)
        end_to_end_time = time.perf_counter() - start
    # 20 000 phantoms pay the compile once (the generator's first call above) and the rest in proportion.
    fixed = min(compile_time, end_to_end_time)
    end_to_end_20k = fixed + (end_to_end_time - fixed) * 20000 / count

    # Baseline: SuperLU per phantom, same chromophores, phantom + homogeneous background.
    jax.config.update("jax_enable_x64", True)
    model = simulator.model
    n = min(args.baseline_count, count)
    chromophores = samples["chromophores_nodes"][:n].astype(np.float64)
    backgrounds = np.repeat(samples["background"][:n, :, None].astype(np.float64), model.fem.n_nodes, 2)
    baselines = [SuperLUBaseline(model, c) for pair in zip(chromophores, backgrounds) for c in pair]
    start = time.perf_counter()
    results = [b.forward() for b in baselines]
    scipy_rate = n / (time.perf_counter() - start)
    worst = max(np.abs(r - samples["ln_amplitude_clean"][i]).max() for i, r in enumerate(results[::2]))

    rows = [
        ("ours, generation (warm)", ours),
        ("ours, end to end incl. compile + write", 20000 / end_to_end_20k),
        ("SciPy SuperLU, solves only", scipy_rate),
    ]
    print(f"\n{'':40s} {'phantoms/s':>11} {'20 000 phantoms':>16} {'vs SciPy':>9}")
    for name, rate in rows:
        print(f"{name:40s} {rate:11.1f} {20000 / rate / 60:13.1f} min {rate / scipy_rate:8.2f}×")
    record("simulate", f"phantoms/s, {model.fem.n_nodes} nodes, {args.precision}", ours, scipy_rate, "phantoms/s", "SciPy SuperLU")
    record("simulate", f"20 000 phantoms end to end incl. compile and writing (from {count})", end_to_end_20k / 60,
           20000 / scipy_rate / 60, "min", "SciPy SuperLU, solves only")
    print(f"\n{count} phantoms end to end took {end_to_end_time:.1f} s, compile {compile_time:.1f} s of it (counted once "
          f"for 20 000); |ours − SciPy| ln A ≤ {worst:.1e} ({args.precision} vs float64)")


if __name__ == "__main__":
    main()
