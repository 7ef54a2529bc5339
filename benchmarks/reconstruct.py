"""Gauss-Newton DRI reconstruction: nirst-jax (jit, warm) vs a SciPy Gauss-Newton, same steps.

Usage: python benchmarks/reconstruct.py [--spacing 2.5] [--batch 8] [--repeats 3]

The SciPy baseline is what a researcher would write with SciPy: per step, SuperLU per
wavelength for the forward and adjoint fields, the chromophore Jacobian from them (NumPy),
the basis by a sparse product, dense normal equations and a Cholesky solve — the same
algorithm, regulariser, starting point and number of linearisations as ours.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg as sla  # noqa: E402
import scipy.sparse as sp  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from forward import SuperLUBaseline, best_time  # noqa: E402
from _summary import record  # noqa: E402

import nirst_jax as nj  # noqa: E402
from nirst_jax.phantoms import Circle, Coverage, Phantom, Region  # noqa: E402
from nirst_jax.physics import add_amplitude_noise  # noqa: E402
from nirst_jax.recon import GaussNewton, Reconstructor, fit_homogeneous  # noqa: E402


def scipy_gauss_newton(model, basis, data, regulariser, weight, reference, linearisations: int):
    """The module docstring's baseline; returns the coefficients (3, K)."""
    n_basis = basis.n_coefficients
    b = sp.csr_matrix(
        (basis.to_nodes.weights.ravel(), (np.repeat(np.arange(basis.n_nodes), basis.to_nodes.indices.shape[1]),
                                          basis.to_nodes.indices.ravel())),
        shape=(basis.n_nodes, n_basis),
    )
    scale = np.asarray(reference)
    blocks = sp.block_diag([b * s for s in scale]).tocsc()  # ∂c/∂u, (3N, 3K)
    u0 = np.ones((3, n_basis))
    u = previous = u0.copy()
    y = np.asarray(data).reshape(-1)
    penalty = np.kron(np.eye(3), regulariser) * weight
    curvature, misfit = None, np.inf
    for k in range(linearisations):
        chromophores = np.asarray(b @ (u * scale[:, None]).T).T
        baseline = SuperLUBaseline(model, chromophores)
        residual = y - baseline.forward().reshape(-1)
        new_misfit = np.mean(residual**2)
        if new_misfit >= misfit:
            u = previous
            break
        misfit = new_misfit
        jacobian = (blocks.T @ baseline.jacobian().reshape(len(y), -1).T).T  # (M, 3K)
        normal = jacobian.T @ jacobian
        if curvature is None:
            curvature = np.trace(normal) / normal.shape[0]
        if k == linearisations - 1:
            break
        damping = curvature * (10**-0.25) ** k
        rhs = jacobian.T @ residual - damping * penalty @ (u - u0).ravel()
        previous = u
        u = u + sla.cho_solve(sla.cho_factor(normal + damping * penalty), rhs).reshape(3, n_basis)
        u = np.clip(u, 0, np.array([1000, 1000, 100])[:, None] / scale[:, None])
    return u * scale[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spacing", type=float, default=2.5, help="mesh spacing (mm); 2.5 gives 1797 nodes")
    parser.add_argument("--batch", type=int, default=8, help="phantoms per vmapped batch")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    mesh = nj.disk_mesh(41.0, args.spacing)
    model = nj.SpectralForwardModel.create(mesh)
    phantom = Phantom((12.2, 4.8, 28.0), (Region(Circle((15.0, 10.0), 8.0), (24.4, 9.6, 42.0), 80.0),), radius_mm=41.0)
    clean = np.asarray(jax.jit(lambda c: model(c))(jnp.asarray(phantom.nodal(Coverage.nodes(mesh)))))
    rng = np.random.default_rng(0)
    data = np.asarray(add_amplitude_noise(clean, 0.01, rng.normal(size=clean.shape)))
    reconstructor = Reconstructor.create(model, mesh, "dri")
    mask = np.asarray(reconstructor.grid.mask)
    mri = phantom.mri(Coverage.pixels(nj.recon.image_grid(mesh)), mask) * (1 + 0.04 * rng.normal(size=mask.shape))
    print(f"mesh {mesh.n_nodes} nodes, basis {reconstructor.basis.n_coefficients} coefficients, "
          f"{model.n_wavelengths} wavelengths × 240 measurements; backend {jax.default_backend()}, "
          f"{jax.device_count()} device(s)")

    full = jax.jit(lambda d, s: reconstructor(d, s))
    started = time.perf_counter()
    result = jax.block_until_ready(full(data, mri))
    compile_s = time.perf_counter() - started
    ours_full = best_time(lambda: jax.block_until_ready(full(data, mri)), args.repeats)

    # Equal work: the same start and the same linearisations for both.
    reference = np.asarray(fit_homogeneous(model, jnp.asarray(data)).coefficients[:, 0])
    fixed = Reconstructor.create(model, mesh, "dri", solver=GaussNewton(iterations=10, tolerance=0.0))
    gn_only = jax.jit(lambda d, s: fixed(d, s, reference=reference))
    gn_result = jax.block_until_ready(gn_only(data, mri))
    # The initial linearisation, one per accepted step, and the rejected trial if it stopped.
    linearisations = 1 + int(gn_result.steps) + int(gn_result.steps < 10)
    ours_gn = best_time(lambda: jax.block_until_ready(gn_only(data, mri)), args.repeats)
    regulariser = np.asarray(fixed.regulariser(mri))
    started = time.perf_counter()
    baseline = scipy_gauss_newton(model, fixed.basis, data, regulariser, 10.0, reference, linearisations)
    scipy_gn = time.perf_counter() - started
    ours_nodes = np.asarray(gn_result.chromophores)
    baseline_nodes = np.asarray(fixed.basis.nodes_from(jnp.asarray(baseline)))
    agreement = np.abs(baseline_nodes - ours_nodes).max() / np.abs(ours_nodes).max()

    batch_data = np.stack([data] * args.batch)
    batch_mri = np.stack([mri] * args.batch)
    batched = jax.jit(jax.vmap(lambda d, s: reconstructor(d, s)))
    jax.block_until_ready(batched(batch_data, batch_mri))
    batch_s = best_time(lambda: jax.block_until_ready(batched(batch_data, batch_mri)), max(1, args.repeats - 1))

    rows = [
        ("DRI reconstruction, homogeneous fit + GN (float64)", ours_full, None),
        (f"GN only, {linearisations} linearisations (float64)", ours_gn, scipy_gn),
        (f"vmapped batch of {args.batch}, per phantom", batch_s / args.batch, None),
    ]
    print(f"compile (first call): {compile_s:.1f} s; DRI took {int(result.steps)} steps "
          f"(GN-only run: {int(gn_result.steps)} accepted)")
    print(f"{'':55s} {'nirst-jax':>10s} {'SciPy GN':>10s} {'ratio':>7s}")
    for name, ours, theirs in rows:
        ratio = f"{ours / theirs:7.2f}" if theirs else ""
        theirs_text = f"{theirs:9.2f}s" if theirs else ""
        print(f"{name:55s} {ours:9.2f}s {theirs_text:>10s} {ratio}")
    record("reconstruct", f"DRI Gauss-Newton, {mesh.n_nodes} nodes", ours_gn, scipy_gn, "s", "SciPy Gauss-Newton")
    record("reconstruct", f"DRI per phantom in a vmapped batch of {args.batch}", batch_s / args.batch, None, "s")
    print(f"SciPy and nirst-jax coefficients agree to {agreement:.1e} (relative max)")


if __name__ == "__main__":
    main()
