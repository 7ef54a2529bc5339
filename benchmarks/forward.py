"""Forward model and spectral Jacobian: nirst-jax (jit, warm) vs SciPy SuperLU, same matrices.

For disk meshes of about 1800, 3000 and 6000 nodes and one phantom (9 wavelengths × 16
sources, CW), prints side by side:

- forward: ours vs assembling the same COO values into CSC + `scipy.sparse.linalg.splu` + solves;
- Jacobian d lnA / d(HbO, Hb, water): ours (adjoint) vs SuperLU source + adjoint solves and the
  same sensitivity formulas in NumPy;
- the matrix-free products J·v and Jᵀ·w (`jacobian_product`, `jacobian_transpose_product`)
  against one forward (target: Jᵀ·w ≤ 2× a forward);
- the float32 option: the Jacobian of float32 chromophores (float32 solves, half the memory),
  against the float64 and the float32 forward (the script asserts it matches the float64
  Jacobian to 1e-5 of its largest entry);
- compile times, and the throughput of a vmapped batch of phantoms;
- the page faults and system CPU time of each Jacobian call (the kernel zero-fills fresh
  pages for its large result; see docs/benchmarks.md for the allocator setting that avoids it).

Run: `python benchmarks/forward.py [--repeats 20] [--batch 8] [--spacings 2.5,2.0,1.35]`.
(jac/fwd: float64 Jacobian over float64 forward; f32 jac: float32 Jacobian, then its ratio to the
float64 and to the float32 forward.)
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time

import nirst_jax  # noqa: F401  (sets XLA flags before JAX starts)
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from nirst_jax import SpectralForwardModel, disk_mesh
from _summary import record

jax.config.update("jax_enable_x64", True)

BACKGROUND = np.array([12.2, 4.8, 28.0])


def interleaved_times(functions, repeats: int) -> list[float]:
    """Median wall time of each function, calling them in turn `repeats` times after warm-up.

    Interleaving keeps a ratio between them fair on a machine whose speed drifts.
    """
    for fn in functions:
        fn()
        fn()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for fn, spent in zip(functions, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def best_time(fn, repeats: int) -> float:
    """Median wall time of `fn()` over `repeats` calls, after two warm-up calls."""
    return interleaved_times([fn], repeats)[0]


def page_faults_per_call(fn, calls: int = 5) -> tuple[float, float]:
    """(minor page faults, system CPU seconds) per call of `fn`, averaged over `calls`."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(calls):
        fn()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_minflt - before.ru_minflt) / calls, (after.ru_stime - before.ru_stime) / calls


def phantom(mesh, rng):
    chromophores = np.repeat(BACKGROUND[:, None], mesh.n_nodes, axis=1)
    inside = np.hypot(*(mesh.nodes - rng.uniform(-15, 15, 2)).T) < 8
    chromophores[:, inside] *= 1.5
    return chromophores


class SuperLUBaseline:
    """The same linear systems solved per wavelength with SciPy's SuperLU."""

    def __init__(self, model: SpectralForwardModel, chromophores):
        mua, musp = model.optical_properties(jnp.asarray(chromophores))
        self.values = [np.asarray(model._system(m, s)[0]) for m, s in zip(mua, musp)]
        self.kappa = [np.asarray(1 / (3 * (m + s))) for m, s in zip(mua, musp)]
        fem = model.fem
        self.n = fem.n_nodes
        self.rows, self.cols = fem.pattern.rows, fem.pattern.cols
        self.sources = [
            np.asarray(type(model.sources)(model.sources.indices[l], model.sources.weights[l]).columns(self.n, float))
            for l in range(model.n_wavelengths)
        ]
        self.detectors = np.asarray(model.detectors.columns(self.n, float))
        self.layout = model.layout
        self.extinction = np.asarray(model.extinction)
        self.elements, self.areas, self.stiffness = fem.elements, fem.areas, fem.stiffness

    def _factor(self, values):
        return spla.splu(sp.csc_matrix((values, (self.rows, self.cols)), shape=(self.n, self.n)))

    def _select(self, per_pair):
        s = np.arange(per_pair.shape[0])[:, None]
        return per_pair[s, np.asarray(self.layout.detector_index)]

    def forward(self):
        out = []
        for values, sources in zip(self.values, self.sources):
            fields = self._factor(values).solve(sources)
            out.append(np.log(np.abs(self._select((self.detectors.T @ fields).T))))
        return np.stack(out)

    def _scatter(self, per_element):
        out = np.zeros((self.n,) + per_element.shape[1:], per_element.dtype)
        for corner in range(3):
            np.add.at(out, self.elements[:, corner], per_element)
        return out

    def jacobian(self):
        out = []
        tri = (1 + np.eye(3)[:, :, None] + np.eye(3)[:, None, :] + np.eye(3)[None, :, :])
        tri = tri + 2 * np.einsum("ab,bc->abc", np.eye(3), np.eye(3))  # ∫φaφbφc · 60/A
        for l, (values, sources) in enumerate(zip(self.values, self.sources)):
            lu = self._factor(values)
            x = lu.solve(sources)
            psi = lu.solve(self.detectors)
            fluence = (self.detectors.T @ x).T  # (S, D)
            xe, pe = x[self.elements], psi[self.elements]  # (M, 3, S), (M, 3, D)
            mass_e = np.einsum("abc,mbd,mcs->masd", tri, pe, xe) * (self.areas / 60)[:, None, None, None]
            mass = np.zeros((self.n,) + mass_e.shape[2:])
            for corner in range(3):
                np.add.at(mass, self.elements[:, corner], mass_e[:, corner])
            stiffness = self._scatter(np.einsum("mab,mad,mbs->msd", self.stiffness, pe, xe) / 3)
            d_mua = 3 * self.kappa[l][:, None, None] ** 2 * stiffness - mass  # (N, S, D)
            relative = self._select(np.moveaxis(d_mua / fluence, 0, -1))  # (S, K, N)
            out.append(relative[..., None, :] * self.extinction[l][:, None])
        return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spacings", default="2.5,2.0,1.35", help="mesh spacings (mm)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8, help="phantoms in the vmapped batch")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {platform.processor() or platform.machine()}")
    print(f"float64, CW, 9 wavelengths × 16 sources × 15 detectors; ours: median of {args.repeats} warm runs, forward and Jacobian interleaved\n")
    header = (
        f"{'nodes':>6} | {'fwd ours':>9} {'fwd SciPy':>9} {'ratio':>6} | {'jac ours':>9} {'jac SciPy':>9} "
        f"{'ratio':>6} | {'jac/fwd':>7} {'Jv/fwd':>6} {'JTw/fwd':>7} | {'f32 jac':>8} {'/fwd':>5} {'/fwd32':>6} | "
        f"{'compile f/j':>11} | {'batch/s':>8}"
    )
    print(header)
    print("-" * len(header))
    faults = []
    float32_errors = {}
    for spacing in (float(s) for s in args.spacings.split(",")):
        mesh = disk_mesh(41.0, spacing)
        model = SpectralForwardModel.create(mesh)
        chromophores = phantom(mesh, rng)
        c = jnp.asarray(chromophores)
        forward = jax.jit(lambda c: model(c))
        jacobian = jax.jit(lambda c: model.jacobian(c))
        start = time.perf_counter()
        ours = np.asarray(forward(c))
        compile_forward = time.perf_counter() - start
        start = time.perf_counter()
        ours_jacobian = np.asarray(jacobian(c))
        compile_jacobian = time.perf_counter() - start

        baseline = SuperLUBaseline(model, chromophores)
        np.testing.assert_allclose(baseline.forward(), ours, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(baseline.jacobian(), ours_jacobian, rtol=1e-6, atol=1e-9 * np.abs(ours_jacobian).max())

        direction = jnp.asarray(rng.standard_normal(c.shape))
        weights = jnp.asarray(rng.standard_normal(ours.shape))
        product = jax.jit(lambda c, v: model.jacobian_product(c, v)[1])
        transpose_product = jax.jit(lambda c, w: model.jacobian_transpose_product(c, w)[1])
        np.testing.assert_allclose(np.asarray(product(c, direction)), np.einsum("lskcn,cn->lsk", ours_jacobian, direction),
                                   rtol=1e-8, atol=1e-10)
        c32 = c.astype(jnp.float32)
        jacobian32 = np.asarray(jacobian(c32))
        assert jacobian32.dtype == np.float32
        # Checked after the timings are recorded, so a device whose float32 products are
        # inexact still reports its figures (and then fails).
        float32_errors[mesh.n_nodes] = float(np.abs(jacobian32 - ours_jacobian).max() / np.abs(ours_jacobian).max())
        t_forward, t_jacobian, t_product, t_transpose, t_forward32, t_jacobian32 = interleaved_times(
            [lambda: forward(c).block_until_ready(), lambda: jacobian(c).block_until_ready(),
             lambda: product(c, direction).block_until_ready(), lambda: transpose_product(c, weights).block_until_ready(),
             lambda: forward(c32).block_until_ready(), lambda: jacobian(c32).block_until_ready()],
            args.repeats,
        )
        faults.append((mesh.n_nodes, ours_jacobian.nbytes, *page_faults_per_call(lambda: jacobian(c).block_until_ready()),
                       *page_faults_per_call(lambda: jacobian(c32).block_until_ready())))
        t_scipy = best_time(baseline.forward, max(3, args.repeats // 4))
        t_scipy_jacobian = best_time(baseline.jacobian, 3)

        batch = jnp.asarray(np.stack([phantom(mesh, rng) for _ in range(args.batch)]))
        batched = jax.jit(jax.vmap(lambda c: model(c)))
        batched(batch).block_until_ready()
        t_batch = best_time(lambda: batched(batch).block_until_ready(), max(3, args.repeats // 4))
        print(
            f"{mesh.n_nodes:6d} | {1e3 * t_forward:7.1f}ms {1e3 * t_scipy:7.1f}ms {t_forward / t_scipy:6.2f} | "
            f"{1e3 * t_jacobian:7.1f}ms {1e3 * t_scipy_jacobian:7.1f}ms {t_jacobian / t_scipy_jacobian:6.2f} | "
            f"{t_jacobian / t_forward:7.2f} {t_product / t_forward:6.2f} {t_transpose / t_forward:7.2f} | "
            f"{1e3 * t_jacobian32:6.1f}ms {t_jacobian32 / t_forward:5.2f} {t_jacobian32 / t_forward32:6.2f} | "
            f"{compile_forward:4.1f}s/{compile_jacobian:4.1f}s | "
            f"{args.batch / t_batch:8.1f}",
            flush=True,
        )
        record("forward", f"forward, {mesh.n_nodes} nodes", 1e3 * t_forward, 1e3 * t_scipy, "ms", "SciPy SuperLU")
        record("forward", f"phantoms/s, vmapped batch {args.batch}, {mesh.n_nodes} nodes", args.batch / t_batch,
               1 / t_scipy, "phantoms/s", "SciPy SuperLU, one phantom at a time")
        record("forward", f"Jacobian, {mesh.n_nodes} nodes", 1e3 * t_jacobian, 1e3 * t_scipy_jacobian, "ms", "SciPy SuperLU")
        record("forward", f"Jacobian / forward, {mesh.n_nodes} nodes", t_jacobian / t_forward, None, "×")
        record("forward", f"float32 Jacobian / float64 forward, {mesh.n_nodes} nodes", t_jacobian32 / t_forward, None, "×")
        record("forward", f"float32 Jacobian / float32 forward, {mesh.n_nodes} nodes", t_jacobian32 / t_forward32, None, "×")
        record("forward", f"J·v / forward, {mesh.n_nodes} nodes", t_product / t_forward, None, "×")
        record("forward", f"Jᵀ·w / forward, {mesh.n_nodes} nodes", t_transpose / t_forward, None, "×")
        record("forward", f"float32 Jacobian error / largest entry, {mesh.n_nodes} nodes", float32_errors[mesh.n_nodes],
               None, "")
    print("\nratio = ours / SciPy (lower is better); batch/s = phantoms per second, vmapped batch")
    print("Jacobian output and the page faults of writing it (fresh memory from the kernel each call):")
    for nodes, size, count, system, count32, system32 in faults:
        print(f"  {nodes} nodes: {size / 1e6:.0f} MB, {count:.0f} page faults, {1e3 * system:.0f} ms system CPU per call; "
              f"float32: {size / 2e6:.0f} MB, {count32:.0f} page faults, {1e3 * system32:.0f} ms")
    print("float32 Jacobian, largest error / largest entry: "
          + ", ".join(f"{nodes} nodes {error:.1e}" for nodes, error in float32_errors.items()))
    inexact = {nodes: error for nodes, error in float32_errors.items() if error > 1e-5}
    if inexact:
        sys.exit(f"float32 Jacobian differs from float64 by more than 1e-5 of its largest entry: {inexact}")


if __name__ == "__main__":
    main()
