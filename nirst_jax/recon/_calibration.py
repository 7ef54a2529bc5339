"""Homogeneous fits and model-data calibration of measured ln amplitudes.

Measured ln A differ from the model by per-channel coupling (source power, fibre and
detector gains) that no diffusion model predicts. Two standard corrections:

- Reference calibration (NIRFAST's): a homogeneous reference phantom measured with the same
  system gives the coupling: y_cal = y − y_ref + F(c_ref), with c_ref the reference's known
  (or fitted homogeneous) chromophores. Channel-wise gains cancel exactly.
- Self calibration (no reference): fit a homogeneous medium plus one ln A offset per
  wavelength to the data themselves, and remove the offsets: y_cal = y − o_l. Only a global
  gain per wavelength is corrected.

Frequency-domain data (the pair ln A, phase) are calibrated the same way, phase alongside ln A
(channel delays cancel like gains); calibrated phases are wrapped to [0, 2π) as the model's.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from ..phantoms import TissueTable
from ..physics import SpectralForwardModel
from ._basis import ReconstructionBasis
from ._gauss_newton import GaussNewton, GaussNewtonResult, stacked_measurements

HOMOGENEOUS_SOLVER = GaussNewton(iterations=10, tolerance=1e-3, factor_in_float32=False)
"""Gauss-Newton settings for the three-parameter homogeneous fit (its 3×3 system, barely damped,
factorised in float64: nothing to gain in float32)."""
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
    fit_scatter: bool = False,
    phase_weight: float | None = None,
    solver: GaussNewton = HOMOGENEOUS_SOLVER,
) -> GaussNewtonResult:
    """Fit homogeneous HbO, Hb, water (and optionally per-wavelength offsets, and the
    scattering law) to ln A (and phase).

    Arguments:
        model: forward model (CW, or frequency domain).
        data: (L, S, K) ln A, or the pair (ln A, phase) for a frequency-domain model.
        start: (3,) starting values (default `nominal_background()`).
        fit_offsets: also fit one ln A (and phase) offset per wavelength.
        scatter_amplitude, scatter_power: the scattering law (default: the model's); with
            `fit_scatter` its start.
        fit_scatter: also fit homogeneous scattering amplitude and power (needs phase to be
            well determined).
        phase_weight: σ(ln A)/σ(phase) of frequency-domain data (default: the solver's).
        solver: Gauss-Newton settings (`fit_offsets`, `fit_scatter` and `phase_weight` override its own).

    Returns:
        `GaussNewtonResult` with `coefficients` (3, 1), `offsets` (L,) ((L, 2) in the
        frequency domain), and with `fit_scatter` `scatter` (2, 1).
    """
    start = jnp.asarray(nominal_background() if start is None else start, jnp.result_type(float))
    solver = dataclasses.replace(solver, fit_offsets=fit_offsets, fit_scatter=fit_scatter,
                                 phase_weight=solver.phase_weight if phase_weight is None else phase_weight)
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
    fit_scatter: bool = False,
    phase_weight: float = 1.0,
):
    """Correct measured ln A (and phase) for system coupling (module docstring).

    Arguments:
        model: forward model of the measurement set-up (CW, or frequency domain).
        data: (L, S, K) measured ln A, or the pair (ln A, phase) for a frequency-domain model.
        reference: the same of a homogeneous reference phantom, or None for self calibration.
        reference_chromophores: (3,) the reference's HbO, Hb, water if known (else fitted).
        scatter_amplitude, scatter_power: the scattering law (default: the model's).
        fit_scatter: fit the reference's (or, self-calibrating, the data's) homogeneous
            scattering law too, starting from the given one (frequency-domain data).
        phase_weight: σ(ln A)/σ(phase) of frequency-domain data, for those fits.

    Returns:
        (calibrated data, offsets removed), each shaped like `data`.
    """
    measured = stacked_measurements(model, data)

    def fit(target):
        return fit_homogeneous(
            model, target, fit_offsets=True, scatter_amplitude=scatter_amplitude, scatter_power=scatter_power,
            fit_scatter=fit_scatter, phase_weight=phase_weight,
        )

    if reference is None:
        offsets = fit(data).offsets.reshape(model.n_wavelengths, -1)[:, :, None, None]
        offsets = jnp.broadcast_to(offsets, measured.shape)
    else:
        reference_stack = stacked_measurements(model, reference, "reference")
        law = (scatter_amplitude, scatter_power)
        if reference_chromophores is None or fit_scatter:
            fitted = fit(reference)
            if reference_chromophores is None:
                reference_chromophores = fitted.coefficients[:, 0]
            if fit_scatter:
                law = tuple(fitted.scatter[:, 0])
        level = jnp.broadcast_to(jnp.asarray(reference_chromophores, measured.dtype)[:, None], (3, model.fem.n_nodes))
        offsets = reference_stack - stacked_measurements(model, model(level, *law))
    calibrated = measured - offsets
    calibrated = calibrated.at[:, 1:].set(jnp.mod(calibrated[:, 1:], 2 * jnp.pi))
    return _unstacked(calibrated), _unstacked(offsets)


def _unstacked(stacked):
    """(L, D, S, K) back to ln A (D = 1) or the pair (ln A, phase)."""
    return stacked[:, 0] if stacked.shape[1] == 1 else (stacked[:, 0], stacked[:, 1])
