"""Homogeneous fits and model-data calibration of measured ln amplitudes.

Measured ln A differ from the model by per-channel coupling (source power, fibre and
detector gains) that no diffusion model predicts. Two standard corrections:

- Reference calibration (NIRFAST's): a homogeneous reference phantom measured with the same
  system gives the coupling: y_cal = y − y_ref + F(c_ref), with c_ref the reference's known
  (or fitted homogeneous) chromophores. Channel-wise gains cancel exactly.
- Self calibration (no reference): fit a homogeneous medium plus one ln A offset per
  wavelength to the data themselves, and remove the offsets: y_cal = y − o_l. Only a global
  gain per wavelength is corrected.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from ..phantoms import TissueTable
from ..physics import SpectralForwardModel
from ._basis import ReconstructionBasis
from ._gauss_newton import GaussNewton, GaussNewtonResult

HOMOGENEOUS_SOLVER = GaussNewton(iterations=10, tolerance=1e-3)
"""Gauss-Newton settings for the three-parameter homogeneous fit."""
HOMOGENEOUS_WEIGHT = 1e-3
"""Tikhonov weight of the homogeneous fit: a small damping, not a prior."""


def nominal_background() -> np.ndarray:
    """(3,) starting HbO (µM), Hb (µM), water (%): the centre of the breast background ranges."""
    return TissueTable.from_priors().nominal_background()


def fit_homogeneous(
    model: SpectralForwardModel,
    data,
    *,
    start=None,
    fit_offsets: bool = False,
    scatter_amplitude=None,
    scatter_power=None,
    solver: GaussNewton = HOMOGENEOUS_SOLVER,
) -> GaussNewtonResult:
    """Fit homogeneous HbO, Hb, water (and optionally per-wavelength offsets) to ln A.

    Arguments:
        model: CW forward model.
        data: (L, S, K) ln A.
        start: (3,) starting values (default `nominal_background()`).
        fit_offsets: also fit one ln A offset per wavelength.
        scatter_amplitude, scatter_power: the scattering law (default: the model's).
        solver: Gauss-Newton settings (`fit_offsets` overrides its own).

    Returns:
        `GaussNewtonResult` with `coefficients` (3, 1) and `offsets` (L,).
    """
    start = jnp.asarray(nominal_background() if start is None else start, jnp.result_type(float))
    solver = dataclasses.replace(solver, fit_offsets=fit_offsets)
    basis = ReconstructionBasis.constant_for(model.fem.n_nodes)
    return solver(
        model, basis, data, jnp.eye(1), HOMOGENEOUS_WEIGHT, start, start, scatter_amplitude, scatter_power
    )


def calibrate(
    model: SpectralForwardModel,
    data,
    reference=None,
    *,
    reference_chromophores=None,
    scatter_amplitude=None,
    scatter_power=None,
):
    """Correct measured ln A for system coupling (module docstring).

    Arguments:
        model: CW forward model of the measurement set-up.
        data: (L, S, K) measured ln A.
        reference: (L, S, K) ln A of a homogeneous reference phantom, or None for self
            calibration.
        reference_chromophores: (3,) the reference's HbO, Hb, water if known (else fitted).
        scatter_amplitude, scatter_power: the scattering law (default: the model's).

    Returns:
        (calibrated ln A (L, S, K), offsets removed (L, S, K)).
    """
    data = jnp.asarray(data)
    if data.shape != model.data_shape:
        raise ValueError(f"data must have shape {model.data_shape}, got {data.shape}")

    def fit(target):
        return fit_homogeneous(
            model, target, fit_offsets=True, scatter_amplitude=scatter_amplitude, scatter_power=scatter_power
        )

    if reference is None:
        offsets = jnp.broadcast_to(fit(data).offsets[:, None, None], data.shape)
        return data - offsets, offsets
    reference = jnp.asarray(reference)
    if reference.shape != data.shape:
        raise ValueError(f"reference must have the data's shape {data.shape}, got {reference.shape}")
    if reference_chromophores is None:
        reference_chromophores = fit(reference).coefficients[:, 0]
    level = jnp.broadcast_to(jnp.asarray(reference_chromophores, data.dtype)[:, None], (3, model.fem.n_nodes))
    offsets = reference - model(level, scatter_amplitude, scatter_power)
    return data - offsets, offsets

