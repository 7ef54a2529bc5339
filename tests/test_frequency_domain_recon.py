"""Frequency-domain reconstruction: ln A and phase jointly, scatter amplitude and power as unknowns."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nirst_jax as nj
from nirst_jax.recon import GaussNewton, ReconstructionBasis, Reconstructor, calibrate, fit_homogeneous
from nirst_jax.recon._gauss_newton import wrap_phase

BACKGROUND = (12.2, 4.8, 28.0)
FREQUENCY_HZ = 1e8


def _scatter_inclusion(mesh, amplitude_inside=1.6, centre=(15.0, 10.0), radius=10.0):
    """Homogeneous chromophores and a scattering-amplitude inclusion (a = 1 mm⁻¹ outside)."""
    inside = np.hypot(*(mesh.nodes - np.asarray(centre)).T) < radius
    chromophores = np.broadcast_to(np.asarray(BACKGROUND)[:, None], (3, mesh.n_nodes))
    return jnp.asarray(chromophores), jnp.asarray(np.where(inside, amplitude_inside, 1.0)), inside


def test_first_step_is_the_regularised_gauss_newton_step_of_the_autodiff_jacobian():
    """One step with phase rows (weighted, wrapped) and scatter unknowns equals the step built
    from jax.jacfwd of the forward model in the unknowns (HbO, Hb, water, ln a, b) per coefficient."""
    mesh = nj.disk_mesh(41, 8.0)
    model = nj.SpectralForwardModel.create(mesh, frequency_hz=FREQUENCY_HZ, wavelengths_nm=(661, 785, 913))
    basis = ReconstructionBasis.pixels(mesh, 3)
    k = basis.n_coefficients
    scale = jnp.asarray(BACKGROUND)
    u0 = jnp.concatenate([jnp.ones((3, k)), jnp.stack([jnp.full(k, np.log(1.1)), jnp.full(k, 0.9)])])
    phase_weight, weight = 2.0, 0.3

    def forward(u):
        chromophores = basis.nodes_from(u[:3] * scale[:, None])
        ln_a, phase = model(chromophores, jnp.exp(basis.nodes_from(u[3])), basis.nodes_from(u[4]))
        return jnp.concatenate([ln_a.reshape(3, -1), phase_weight * phase.reshape(3, -1)], 1)

    truth = u0 + 0.05 * jax.random.normal(jax.random.key(0), u0.shape)
    # Data phases shifted by 2π where the lag is small: the residual must be wrapped, not 2π.
    ln_a, phase = model(basis.nodes_from(truth[:3] * scale[:, None]), jnp.exp(basis.nodes_from(truth[3])),
                        basis.nodes_from(truth[4]))
    data = (ln_a, jnp.where(phase < 0.3, phase + 2 * np.pi, phase))
    solver = GaussNewton(iterations=1, tolerance=0.0, fit_scatter=True, phase_weight=phase_weight)
    result = solver(model, basis, data, jnp.eye(k), weight, BACKGROUND, scale, 1.1, 0.9)
    assert bool(result.accepted[0])

    jacobian = jax.jacfwd(forward)(u0).reshape(-1, 5 * k)  # (rows, unknowns)
    residual = (forward(truth) - forward(u0)).reshape(-1)
    normal = jacobian.T @ jacobian
    curvature = jnp.trace(normal) / (5 * k)
    step = jnp.linalg.solve(normal + curvature * weight * jnp.eye(5 * k), jacobian.T @ residual).reshape(5, k)
    expected = u0 + step
    np.testing.assert_allclose(result.coefficients, expected[:3] * scale[:, None], rtol=1e-9)
    np.testing.assert_allclose(result.scatter, jnp.stack([jnp.exp(expected[3]), expected[4]]), rtol=1e-9)
    np.testing.assert_allclose(result.misfit[0], jnp.mean(residual**2), rtol=1e-12)  # every (weighted) row


def test_phase_and_scatter_inputs_are_checked():
    mesh = nj.disk_mesh(41, 8.0)
    model = nj.SpectralForwardModel.create(mesh, frequency_hz=FREQUENCY_HZ, wavelengths_nm=(661, 785))
    ln_a, phase = model.homogeneous(jnp.asarray(BACKGROUND))
    with pytest.raises(ValueError, match="phase is never dropped silently"):
        fit_homogeneous(model, ln_a)
    with pytest.raises(ValueError, match=r"data phase must have shape"):
        fit_homogeneous(model, (ln_a, phase[:, :3]))
    with pytest.raises(ValueError, match="phase_weight"):
        GaussNewton(phase_weight=0.0)
    with pytest.raises(ValueError, match="scatter bounds"):
        GaussNewton(scatter_lower=(0.0, 0.0))
    basis = ReconstructionBasis.pixels(mesh, 3)
    with pytest.raises(ValueError, match=r"weight is a scalar or \(5,\)"):
        GaussNewton(fit_scatter=True)(model, basis, (ln_a, phase), jnp.eye(basis.n_coefficients), (1.0, 1.0, 1.0),
                                      BACKGROUND, BACKGROUND)


def test_homogeneous_fit_and_calibration_recover_the_scattering_law_from_phase():
    """Homogeneous FD data with a = 1.3, b = 0.7: the fit finds both and the chromophores;
    reference calibration removes per-channel gains and delays exactly."""
    mesh = nj.disk_mesh(41, 8.0)
    model = nj.SpectralForwardModel.create(mesh, frequency_hz=FREQUENCY_HZ)
    level = jnp.broadcast_to(jnp.asarray(BACKGROUND)[:, None], (3, mesh.n_nodes))
    data = model(level, 1.3, 0.7)
    fit = fit_homogeneous(model, data, fit_scatter=True)
    np.testing.assert_allclose(fit.coefficients[:, 0], BACKGROUND, rtol=1e-3)
    np.testing.assert_allclose(fit.scatter[:, 0], (1.3, 0.7), rtol=1e-3)
    rng = np.random.default_rng(0)
    gain, delay = rng.normal(0, 0.3, model.data_shape), rng.normal(0, 0.2, model.data_shape)
    coupled = lambda d: (d[0] + gain, jnp.mod(d[1] + delay, 2 * np.pi))  # noqa: E731
    reference = model.homogeneous(jnp.asarray((10.0, 5.0, 30.0)))
    calibrated, _ = calibrate(model, coupled(data), coupled(reference), reference_chromophores=(10.0, 5.0, 30.0))
    np.testing.assert_allclose(calibrated[0], data[0], atol=1e-9)
    np.testing.assert_allclose(calibrated[1], data[1], atol=1e-9)
    # Self calibration: one gain and one delay per wavelength, the delay near π where a plain
    # mean of wrapped residuals would be far off (found: the circular mean).
    delays = np.pi - 0.05 + 0.1 * np.arange(model.n_wavelengths)[:, None, None] / model.n_wavelengths
    shifted = (data[0] + 0.4, jnp.mod(data[1] + delays, 2 * np.pi))
    calibrated, offsets = calibrate(model, shifted, fit_scatter=True)
    # To the homogeneous fit's convergence (relative tolerance 1e-3); a plain mean would be ~1 rad off.
    np.testing.assert_allclose(offsets[0], 0.4, atol=1e-3)
    np.testing.assert_allclose(wrap_phase(offsets[1] - delays), 0.0, atol=1e-3)
    np.testing.assert_allclose(wrap_phase(calibrated[1] - data[1]), 0.0, atol=1e-3)


@pytest.mark.slow
def test_frequency_domain_recovers_a_scatter_inclusion_that_cw_cannot():
    """Data from a finer mesh (1 % amplitude, 0.5° phase noise), a 60 % scattering-amplitude
    inclusion in a homogeneous-absorption disk; Tikhonov, reference-calibrated. FD data with
    scatter unknowns recover the inclusion and leave the chromophores flat; CW data with the
    same unknowns cannot separate scatter from absorption; FD without scatter unknowns reads the
    inclusion as absorption."""
    fine, coarse = nj.disk_mesh(41, 3.0), nj.disk_mesh(41, 5.0)
    _, _, inside = _scatter_inclusion(coarse)
    rng = np.random.default_rng(0)
    errors = {}
    for frequency, fit_scatter in ((FREQUENCY_HZ, True), (0.0, True), (FREQUENCY_HZ, False)):
        source = nj.SpectralForwardModel.create(fine, frequency_hz=frequency)
        clean = source(*_scatter_inclusion(fine)[:2])
        reference = source.homogeneous(jnp.asarray(BACKGROUND))
        if frequency:
            data = (clean[0] + 0.01 * rng.normal(size=clean[0].shape),
                    clean[1] + np.deg2rad(0.5) * rng.normal(size=clean[1].shape))
        else:
            data = clean + 0.01 * rng.normal(size=clean.shape)
        model = nj.SpectralForwardModel.create(coarse, frequency_hz=frequency)
        calibrated, _ = calibrate(model, data, reference, reference_chromophores=BACKGROUND)
        solver = GaussNewton(fit_scatter=fit_scatter)
        result = Reconstructor.create(model, coarse, "tikhonov", basis_size=16, solver=solver)(calibrated)
        assert not bool(result.failed)
        chromophore_error = np.abs(np.asarray(result.chromophores) / np.asarray(BACKGROUND)[:, None] - 1).max(0)
        errors[frequency, fit_scatter] = chromophore_error.mean()
        if fit_scatter:
            amplitude = np.asarray(result.scatter[0])
            contrast = amplitude[inside].mean() / amplitude[~inside].mean()
            errors[frequency, "amplitude"] = np.abs(amplitude[~inside] - 1.0).mean(), contrast
    print(errors)
    background_error, contrast = errors[FREQUENCY_HZ, "amplitude"]
    assert background_error < 0.03 and contrast > 1.35  # true contrast 1.6
    assert errors[FREQUENCY_HZ, True] < 0.05  # the chromophores stay flat
    cw_background_error, _ = errors[0.0, "amplitude"]
    assert cw_background_error > 3 * background_error and errors[0.0, True] > 3 * errors[FREQUENCY_HZ, True]
    assert errors[FREQUENCY_HZ, False] > 3 * errors[FREQUENCY_HZ, True]  # scatter read as absorption
