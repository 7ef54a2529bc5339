"""Optical properties from chromophores, the scattering law and the boundary factor."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._full_precision import einsum

SPEED_OF_LIGHT_MM_PER_S = 299_792_458_000.0


def absorption(extinction: jnp.ndarray, chromophores: jnp.ndarray) -> jnp.ndarray:
    """Absorption coefficient µa from chromophore concentrations.

    Arguments:
        extinction: (L, 3) output of `extinction_spectra`.
        chromophores: (..., 3, N) HbO (µM), Hb (µM), water (%) at N points.

    Returns:
        (..., L, N) µa in mm⁻¹.
    """
    extinction = jnp.asarray(extinction, chromophores.dtype)
    return einsum("lc,...cn->...ln", extinction, chromophores)


def reduced_scattering(wavelengths_nm, amplitude, power) -> jnp.ndarray:
    """Reduced scattering µs'(λ) = a·(λ / 1000 nm)^(−b) (NIRFAST's convention).

    Arguments:
        wavelengths_nm: (L,) wavelengths in nm.
        amplitude: scattering amplitude a in mm⁻¹, scalar or (..., N) per point.
        power: scattering power b, scalar or (..., N) per point.

    Returns:
        (L,) for scalar a, b, else (..., L, N), in mm⁻¹.
    """
    amplitude = jnp.asarray(amplitude)
    power = jnp.asarray(power)
    scale = jnp.asarray(np.asarray(wavelengths_nm, np.float64) / 1000.0, jnp.result_type(amplitude, power, float))
    if amplitude.ndim == 0 and power.ndim == 0:
        return amplitude * scale ** (-power)
    amplitude, power = jnp.broadcast_arrays(amplitude, power)  # one of them may be a scalar
    return amplitude[..., None, :] * scale[:, None] ** (-power[..., None, :])


def boundary_factor(refractive_index):
    """Keijzer/Fresnel boundary factor A of the Robin condition Φ + 2Aκ ∂Φ/∂n = 0.

    A = (2/(1 − R0) − 1 + |cos θc|³) / (1 − |cos θc|²), R0 = ((n − 1)/(n + 1))²,
    θc = arcsin(1/n), for tissue of index n against air (Keijzer et al., Appl. Opt. 27, 1820
    (1988)); A = 2.348 at n = 1.33, and A = 1 at n = 1.

    Arguments:
        refractive_index: n ≥ 1, scalar or array.

    Returns:
        A, same shape as `refractive_index`.
    """
    n = jnp.asarray(refractive_index)
    r0 = ((n - 1.0) / (n + 1.0)) ** 2
    cos_critical = jnp.sqrt(1.0 - 1.0 / n**2)
    return (2.0 / (1.0 - r0) - 1.0 + cos_critical**3) / (1.0 - cos_critical**2)


def diffusion_coefficient(mua, musp):
    """κ = 1 / (3 (µa + µs')) in mm."""
    return 1.0 / (3.0 * (mua + musp))
