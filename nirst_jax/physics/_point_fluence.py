"""`point_fluence`: the plain physics entry point (unit point sources, boundary read-out)."""

from __future__ import annotations

import functools

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..mesh import Mesh
from ._fem import DiffusionFEM
from ._optics import SPEED_OF_LIGHT_MM_PER_S, boundary_factor, diffusion_coefficient
from ._optodes import boundary_detectors, point_sources
from ._validation import check_array


@functools.lru_cache(maxsize=8)
def fem_for_mesh(mesh: Mesh) -> DiffusionFEM:
    """The `DiffusionFEM` of a mesh, built once and cached."""
    return DiffusionFEM.from_mesh(mesh)


@eqx.filter_jit
def _boundary_fluence(fem, sources, detectors, mua, musp, refractive_index, wave_number):
    robin = 1.0 / (2.0 * boundary_factor(jnp.asarray(refractive_index, mua.dtype)))
    values = fem.system_values(mua, diffusion_coefficient(mua, musp), robin, wave_number)
    fields = fem.solve(values, sources.columns(fem.n_nodes, values.dtype))
    return detectors(fields.T).astype(jnp.result_type(mua.dtype, jnp.complex64))


def point_fluence(
    mesh: Mesh,
    mua,
    musp,
    sources_xy,
    detectors_xy,
    *,
    refractive_index: float = 1.33,
    frequency_hz: float = 0.0,
) -> jnp.ndarray:
    """Boundary fluence from unit point sources, for nodal optical properties.

    Solves −∇·κ∇Φ + (µa + iω/c)Φ = δ(x − x_s), κ = 1/(3(µa + µs')), with the Robin boundary
    condition Φ + 2Aκ ∂Φ/∂n = 0 (Keijzer A), by P1 finite elements. Sources sit exactly at
    the given points (not moved); detectors are read on the boundary (NIRFAST's rule, see
    `boundary_detectors`). Differentiable with respect to `mua` and `musp`.

    Arguments:
        mesh: the `Mesh` (mm).
        mua: (N,) absorption at the nodes (mm⁻¹), ≥ 0.
        musp: (N,) reduced scattering at the nodes (mm⁻¹), > 0.
        sources_xy: (S, 2) source positions (mm).
        detectors_xy: (D, 2) detector positions on the boundary (mm).
        refractive_index: n, scalar.
        frequency_hz: modulation frequency (0 for continuous wave).

    Returns:
        (S, D) complex fluence; the phase lag is −arg Φ.
    """
    mua = check_array("mua", mua, (mesh.n_nodes,), minimum=0.0)
    musp = check_array("musp", musp, (mesh.n_nodes,), minimum=0.0, strict=True)
    if not (np.isfinite(refractive_index) and refractive_index >= 1):
        raise ValueError(f"refractive_index must be ≥ 1, got {refractive_index!r}")
    if not (np.isfinite(frequency_hz) and frequency_hz >= 0):
        raise ValueError(f"frequency_hz must be finite and ≥ 0, got {frequency_hz!r}")
    dtype = jnp.result_type(mua.dtype, musp.dtype, float)
    wave_number = (
        None if frequency_hz == 0 else 2 * np.pi * frequency_hz * refractive_index / SPEED_OF_LIGHT_MM_PER_S
    )
    return _boundary_fluence(
        fem_for_mesh(mesh),
        point_sources(mesh, sources_xy),
        boundary_detectors(mesh, detectors_xy),
        mua.astype(dtype),
        musp.astype(dtype),
        float(refractive_index),
        wave_number,
    )
