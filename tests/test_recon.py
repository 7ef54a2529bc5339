"""Gauss-Newton reconstruction: bases, regularisers, calibration, accuracy, gradients, CLI."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nirst_jax as nj
from nirst_jax.cli import _reconstruct, build_parser, main
from nirst_jax.datasets import PhantomSimulator, SimulationConfig
from nirst_jax.evaluation import GaussNewtonMethod, mse
from nirst_jax.geometry import MeasurementSetup
from nirst_jax.phantoms import Circle, Coverage, Phantom, Region
from nirst_jax.physics import add_amplitude_noise
from nirst_jax.recon import (
    GaussNewton,
    GaussNewtonStatus,
    ReconstructionBasis,
    Reconstructor,
    calibrate,
    dri_matrix,
    fit_homogeneous,
    otsu_threshold,
    region_memberships,
    soft_prior_matrix,
)

BACKGROUND = (12.2, 4.8, 28.0)
LESION = (24.4, 9.6, 42.0)  # HbT contrast 2, water contrast 1.5


@pytest.fixture(scope="module")
def small():
    mesh = nj.disk_mesh(41, 5.0)
    return mesh, nj.SpectralForwardModel.create(mesh)


def one_inclusion(mesh, model, noise, seed=0):
    """Noisy ln A, the MRI image and the true images of a one-inclusion phantom."""
    phantom = Phantom(BACKGROUND, (Region(Circle((15.0, 10.0), 8.0), LESION, 80.0, "lesion"),), radius_mm=41.0)
    clean = np.asarray(jax.jit(lambda c: model(c))(jnp.asarray(phantom.nodal(Coverage.nodes(mesh)))))
    rng = np.random.default_rng(seed)
    data = np.asarray(add_amplitude_noise(clean, noise, rng.normal(size=clean.shape)))
    grid = nj.recon.image_grid(mesh)
    mask = np.asarray(nj.mesh.GridInterpolation.build(mesh, grid).mask)
    truth = phantom.images(Coverage.pixels(grid), mask)
    mri = np.where(mask, phantom.mri(Coverage.pixels(grid), mask), 0.0) * (1 + 0.04 * rng.normal(size=mask.shape))
    return data, mri, truth, mask, grid


def test_pixel_basis_is_linear_and_its_transpose_is_the_adjoint(small):
    mesh, _ = small
    basis = ReconstructionBasis.pixels(mesh, 12)
    plane = lambda p: 2.0 * p[:, 0] - p[:, 1] + 3.0  # noqa: E731
    np.testing.assert_allclose(basis.nodes_from(plane(basis.centers)), plane(mesh.nodes), rtol=0, atol=1e-10)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=basis.n_coefficients), rng.normal(size=mesh.n_nodes)
    np.testing.assert_allclose(np.dot(basis.nodes_from(x), y), np.dot(x, basis.apply_transpose(y)), rtol=1e-12)
    np.testing.assert_allclose(basis.average(np.full(mesh.n_nodes, 7.0)), 7.0, rtol=1e-12)
    with pytest.raises(ValueError, match="size"):
        ReconstructionBasis.pixels(mesh, 1)


def test_structural_priors_annihilate_groups_and_penalise_mixing():
    grey = np.array([50.0, 51.0, 49.0, 80.0, 81.0, 50.5])
    r = np.asarray(dri_matrix(grey, width=0.1, tikhonov_fraction=0.0))
    np.testing.assert_allclose(r, r.T, atol=1e-14)
    same_per_group = np.array([1.0, 1.0, 1.0, 3.0, 3.0, 1.0])
    mixed = np.array([1.0, 3.0, 1.0, 3.0, 1.0, 1.0])
    assert same_per_group @ r @ same_per_group < 1e-12 * (mixed @ r @ mixed)
    assert np.linalg.eigvalsh(np.asarray(dri_matrix(grey))).min() > 0
    # Hard labels: L = I − 1/n_r within each region.
    labels = np.array([0, 0, 1, 1, 1])
    membership = np.eye(2)[labels]
    coupling = np.eye(5) - (labels[:, None] == labels[None]) / np.bincount(labels)[labels][:, None]
    np.testing.assert_allclose(soft_prior_matrix(membership, 0.01), coupling.T @ coupling + 0.01 * np.eye(5), atol=1e-14)


def test_otsu_and_memberships():
    image = np.where(np.arange(100)[:, None] < 30, 80.0, 50.0) + np.zeros((100, 100))
    threshold = otsu_threshold(image)
    assert 50 <= threshold < 80
    memberships = region_memberships((image > threshold).astype(int))
    assert memberships.shape == (2, 100, 100) and memberships.sum(0).min() == 1
    with pytest.raises(ValueError, match="two grey levels"):
        otsu_threshold(np.ones((4, 4)))


def test_calibration_removes_system_coupling(small):
    mesh, model = small
    level = lambda c: jnp.broadcast_to(jnp.asarray(c, float)[:, None], (3, mesh.n_nodes))  # noqa: E731
    phantom = jnp.asarray(Phantom(BACKGROUND, (Region(Circle((10.0, 0.0), 8.0), LESION, 80.0),), radius_mm=41.0).nodal(Coverage.nodes(mesh)))
    gains = np.random.default_rng(2).normal(0.0, 0.5, model.data_shape)
    reference_values = (14.0, 6.0, 35.0)
    measured = model(phantom) + gains
    reference = model(level(reference_values)) + gains
    calibrated, _ = calibrate(model, measured, reference, reference_chromophores=reference_values)
    np.testing.assert_allclose(calibrated, model(phantom), atol=1e-10)
    # Unknown reference composition: a homogeneous fit with per-wavelength offsets cannot see
    # channel gains, so test it on a per-wavelength gain only.
    offsets = np.random.default_rng(3).normal(0.0, 1.0, (model.n_wavelengths, 1, 1))
    fit = fit_homogeneous(model, model(level(reference_values)) + offsets, fit_offsets=True)
    np.testing.assert_allclose(fit.coefficients[:, 0], reference_values, rtol=1e-4)
    np.testing.assert_allclose(fit.offsets, offsets.ravel(), atol=1e-5)
    self_calibrated, _ = calibrate(model, model(level(reference_values)) + offsets)
    np.testing.assert_allclose(self_calibrated, model(level(reference_values)), atol=1e-5)


def test_bad_inputs_are_rejected(small):
    mesh, model = small
    reconstructor = Reconstructor.create(model, mesh, "dri", basis_size=10)
    data = jnp.zeros(model.data_shape)
    with pytest.raises(ValueError, match="needs the MRI"):
        reconstructor.regulariser(None)
    with pytest.raises(ValueError, match="MRI image must have shape"):
        reconstructor.regulariser(np.ones((50, 50)))
    with pytest.raises(ValueError, match="data must have shape"):
        reconstructor(data[:, :8], np.ones((100, 100)))
    with pytest.raises(ValueError, match="method"):
        Reconstructor.create(model, mesh, "tv")
    with pytest.raises(ValueError, match="iterations"):
        GaussNewton(iterations=0)
    with pytest.raises(ValueError, match=r"must be the pair \(ln A, phase\)"):
        fit_homogeneous(nj.SpectralForwardModel.create(mesh, frequency_hz=1e8), data)
    with pytest.raises(ValueError, match="model is continuous-wave"):
        fit_homogeneous(model, (data, data))


def test_gauss_newton_reports_failures_instead_of_a_silent_homogeneous_fit(small):
    """Invalid weights are refused (or, traced, flagged); a NaN step or NaN data is a failure status."""
    mesh, model = small
    data, mri, _, _, _ = one_inclusion(mesh, model, 0.01)
    reconstructor = Reconstructor.create(model, mesh, "dri", basis_size=10, solver=GaussNewton(iterations=3))
    for weight in (0.0, -1.0, float("nan"), (1.0, -1.0, 1.0)):
        with pytest.raises(ValueError, match="weight α must be finite and > 0"):
            reconstructor(data, mri, weight)
    run = jax.jit(lambda d, m, w: reconstructor(d, m, w))
    good = run(data, mri, 10.0)
    assert not good.failed and int(good.steps) >= 1
    assert GaussNewtonStatus(int(good.status)) in (GaussNewtonStatus.CONVERGED, GaussNewtonStatus.MISFIT_ROSE,
                                                   GaussNewtonStatus.MAX_ITERATIONS)
    traced_weight = run(data, mri, -1.0)  # under jit the value check cannot raise
    assert int(traced_weight.status) == GaussNewtonStatus.INVALID_INPUT and int(traced_weight.steps) == 0
    bad_data, bad_mri = data.copy(), mri.copy()
    bad_data[0, 0, 0], bad_mri[50, 50] = np.nan, np.nan
    nan_data = run(bad_data, mri, 10.0)
    assert int(nan_data.status) == GaussNewtonStatus.INVALID_INPUT and bool(nan_data.failed)
    nan_prior = run(data, bad_mri, 10.0)
    assert int(nan_prior.status) == GaussNewtonStatus.NOT_FINITE and int(nan_prior.steps) == 0
    # Batched evaluation warns, naming the failed phantoms.
    method = GaussNewtonMethod(mesh, MeasurementSetup.disk(), nj.physics.PAPER_WAVELENGTHS_NM, iterations=2, progress=False)
    with pytest.warns(RuntimeWarning, match="1 of 2 phantoms \\(positions \\[1\\]\\) failed"):
        method(np.stack([data, np.full_like(data, np.nan)]), np.stack([mri, mri]))
    with pytest.raises(ValueError, match="weight"):
        GaussNewtonMethod(mesh, MeasurementSetup.disk(), nj.physics.PAPER_WAVELENGTHS_NM, weight=0.0)


def test_float32_factorisation_refined_in_float64_gives_the_float64_reconstruction(small, monkeypatch):
    """The damped normal matrix factorised in float32 and each step refined against the float64
    system gives the float64 factorisation's DRI within 1e-10 (relative); the unrefined float32
    step does not."""
    import nirst_jax.recon._gauss_newton as gauss_newton

    mesh, model = small
    data, mri, _, _, _ = one_inclusion(mesh, model, 0.01)

    def run(factor_in_float32, weight=10.0):
        solver = GaussNewton(iterations=4, tolerance=0.0, factor_in_float32=factor_in_float32)
        reconstructor = Reconstructor.create(model, mesh, "dri", basis_size=12, solver=solver)
        return jax.jit(lambda d, m, w: reconstructor(d, m, w))(data, mri, weight)

    def chromophores(factor_in_float32):
        result = run(factor_in_float32)
        assert int(result.steps) >= 2
        return np.asarray(result.chromophores)

    exact = chromophores(False)
    error = lambda c: np.abs(c - exact).max() / np.abs(exact).max()  # noqa: E731
    assert error(chromophores(True)) < 1e-10
    # A system too ill-conditioned for float32 (α = 1e-9) is a reported failure, not a silently inaccurate step.
    ill = run(True, 1e-9)
    assert int(ill.status) == GaussNewtonStatus.INACCURATE_SOLVE and bool(ill.failed) and int(ill.steps) == 0
    assert not run(False, 1e-9).failed
    monkeypatch.setattr(gauss_newton, "REFINEMENT_STEPS", 0)
    jax.clear_caches()  # the solver's program was compiled with the refinements
    try:
        assert error(chromophores(True)) > 1e-8  # what the refinement removes
    finally:
        jax.clear_caches()  # no program without them for later tests


def test_reconstruct_cli_factorises_in_float64_on_request(small):
    """`--factorise-in-float64` gives `nirst reconstruct` the float64 factorisation (the default
    is float32, refined)."""
    mesh, model = small
    for flags, expected in (([], True), (["--factorise-in-float64"], False)):
        args = build_parser().parse_args(["reconstruct", "--data", "x.npz", *flags])
        reconstructor = _reconstruct._reconstructor(args, "tikhonov", model, mesh, nj.recon.image_grid(mesh), 3, None)
        assert reconstructor.solver.factor_in_float32 is expected


@pytest.mark.extended
def test_dri_recovers_one_inclusion_and_beats_tikhonov():
    """Paper-size phantom (1797 nodes), 1% noise: DRI within ±15 % / ±5 %, monotone misfit."""
    mesh = nj.disk_mesh(41, 2.5)
    model = nj.SpectralForwardModel.create(mesh)
    data, mri, truth, mask, grid = one_inclusion(mesh, model, noise=0.01)
    centers = grid.centers()
    inside = (np.hypot(centers[..., 0] - 15.0, centers[..., 1] - 10.0) < 8.0) & mask
    outside = mask & (np.hypot(centers[..., 0] - 15.0, centers[..., 1] - 10.0) > 10.0)
    errors = {}
    for method in ("dri", "tikhonov"):
        reconstructor = Reconstructor.create(model, mesh, method)
        result = jax.tree.map(np.asarray, jax.jit(lambda d, s: reconstructor(d, s))(data, mri))
        history = result.misfit[np.isfinite(result.misfit)]
        assert len(history) >= 3 and np.all(np.diff(history) < 0), history
        assert history[-1] < 1.5 * 0.01**2  # down to the noise level
        hbt, true_hbt = result.images[0] + result.images[1], truth[0] + truth[1]
        errors[method] = {
            "lesion_hbt": hbt[inside].mean() / true_hbt[inside].mean() - 1,
            "background_hbt": hbt[outside].mean() / true_hbt[outside].mean() - 1,
            "lesion_water": result.images[2][inside].mean() / truth[2][inside].mean() - 1,
            "background_water": result.images[2][outside].mean() / truth[2][outside].mean() - 1,
        }
    dri, tikhonov = errors["dri"], errors["tikhonov"]
    assert abs(dri["lesion_hbt"]) < 0.15 and abs(dri["lesion_water"]) < 0.15, dri
    assert abs(dri["background_hbt"]) < 0.05 and abs(dri["background_water"]) < 0.05, dri
    assert abs(tikhonov["lesion_hbt"]) > abs(dri["lesion_hbt"]), errors
    assert abs(tikhonov["lesion_water"]) > abs(dri["lesion_water"]), errors


def test_refinement_corrects_a_wrong_start_toward_the_data(small):
    """A start with the right shape but a 60 % too high lesion HbT (a network copying the MRI)
    is pulled to the data's contrast by 5 DRI steps centred on it; the true images barely move."""
    mesh, model = small
    data, mri, truth, mask, grid = one_inclusion(mesh, model, noise=0.01)
    centers = grid.centers()
    distance = np.hypot(centers[..., 0] - 15.0, centers[..., 1] - 10.0)
    inside, outside = (distance < 6.0) & mask, (distance > 10.0) & mask
    wrong = truth.copy()
    lesion = distance < 8.0
    wrong[:2, lesion] = truth[:2, lesion] * 1.6
    reconstructor = Reconstructor.create(model, mesh, "dri", grid=grid, solver=GaussNewton(iterations=5))
    refine = jax.jit(lambda d, m, s: reconstructor(d, m, start=s))
    hbt_error = lambda images: (images[0] + images[1])[inside].mean() / (truth[0] + truth[1])[inside].mean() - 1  # noqa: E731
    result = jax.tree.map(np.asarray, refine(data, mri, wrong))
    history = result.misfit[np.isfinite(result.misfit)]
    assert result.steps >= 1 and np.all(np.diff(history) < 0) and history[-1] < 1.5 * 0.01**2, history
    assert abs(hbt_error(result.images)) < 0.5 * abs(hbt_error(wrong)), (hbt_error(wrong), hbt_error(result.images))
    assert abs((result.images[2][outside] / truth[2][outside]).mean() - 1) < 0.03
    assert (result.images[:, ~mask] == 0).all() and result.images.shape == truth.shape
    kept = jax.tree.map(np.asarray, refine(data, mri, truth))
    assert abs(hbt_error(kept.images)) < 0.1 and np.abs(kept.images - truth)[:, outside].mean() < 0.5
    with pytest.raises(ValueError, match="start must have shape"):
        reconstructor(data, mri, start=truth[:, :50])


@pytest.mark.extended
def test_dri_beats_tikhonov_on_random_phantoms():
    """50 paper-distribution phantoms (2 % noise) on a coarse mesh, batched with vmap."""
    config = SimulationConfig(mesh_spacing_mm=5.0, precision="float64")
    simulator = PhantomSimulator.create(config)
    batch = jax.jit(jax.vmap(lambda k: simulator(k)))(jax.random.split(jax.random.key(7), 50))
    mesh = config.mesh()
    mask = np.asarray(simulator.mask)
    scores = {}
    for method in ("dri", "tikhonov"):
        reconstructor = Reconstructor.create(simulator.model, mesh, method, basis_size=12)
        result = jax.jit(jax.vmap(lambda d, s: reconstructor(d, s)))(batch["ln_amplitude"], batch["mri"])
        scores[method] = np.asarray(mse(result.images, batch["targets"], mask)).mean(0)
    assert np.all(scores["dri"] < scores["tikhonov"]), scores
    # The batched reconstruction of a phantom is its own reconstruction.
    single = jax.jit(lambda d, s: reconstructor(d, s))(batch["ln_amplitude"][3], batch["mri"][3])
    np.testing.assert_allclose(result.chromophores[3], single.chromophores, rtol=1e-7, atol=1e-9)


@pytest.mark.extended
def test_gradient_wrt_regularisation_weight_matches_finite_differences(small):
    mesh, model = small
    solver = GaussNewton(iterations=2, tolerance=0.0, unrolled=True)
    reconstructor = Reconstructor.create(model, mesh, "dri", basis_size=8, solver=solver)
    data, mri, truth, mask, _ = one_inclusion(mesh, model, noise=0.0)

    def loss(log_weight):
        images = reconstructor(data, mri, jnp.exp(log_weight)).images
        return jnp.sum(jnp.where(mask, (images - truth) ** 2, 0.0))

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    x = jnp.log(10.0)
    _, gradient = value_and_grad(x)
    h = 1e-4
    finite = (loss(x + h) - loss(x - h)) / (2 * h)
    assert abs(float(gradient)) > 0
    np.testing.assert_allclose(gradient, finite, rtol=2e-4)
    steps = reconstructor(data, mri, 10.0).steps
    assert int(steps) == 2  # all steps taken, so the derivative is of one smooth branch


@pytest.mark.slow
def test_reconstruct_cli(tmp_path):
    forward = tmp_path / "forward"
    assert main(["forward", "--out", str(forward), "--mesh-spacing", "5", "--noise", "0.01"]) == 0
    arrays = np.load(forward / "forward.npz")
    images, mask = arrays["chromophore_images"], arrays["image_mask"]
    # `nirst forward` writes the phantom's MRI: inclusion grey 80, background 50, 0 off the disk.
    mri = np.load(forward / "mri.npy")
    lesion, background = images[0] == images[0][mask].max(), images[0] == images[0][mask].min()
    assert mri.shape == mask.shape and (mri[~mask] == 0).all() and lesion.sum() > 10
    np.testing.assert_allclose(mri[lesion & mask], 80.0)
    np.testing.assert_allclose(mri[background & mask], 50.0)
    out = tmp_path / "dri"
    status = main(
        ["reconstruct", "--data", str(forward / "forward.npz"), "--mri", str(forward / "mri.npy"),
         "--out", str(out), "--basis-size", "12", "--iterations", "4", "--roi", "15,10,8"]
    )
    assert status == 0
    result = np.load(out / "reconstruction.npz")
    assert result["images"].shape == (3, 100, 100) and result["chromophores_nodes"].shape == (3, len(arrays["nodes"]))
    summary = json.loads((out / "convergence.json").read_text())
    assert summary["hbt_contrast"] > 1.2 and summary["steps"] >= 1
    assert (out / "reconstruction.png").stat().st_size > 10_000
    # Soft prior from an Otsu segmentation; any square MRI covering the disk works.
    np.save(tmp_path / "coarse.npy", mri[::2, ::2])
    assert main(["reconstruct", "--method", "softprior", "--data", str(forward / "forward.npz"), "--mri",
                 str(tmp_path / "coarse.npy"), "--out", str(tmp_path / "soft"), "--basis-size", "12",
                 "--iterations", "2"]) == 0
    assert np.load(tmp_path / "soft" / "reconstruction.npz")["images"].shape == (3, 50, 50)
    np.save(tmp_path / "rect.npy", mri[:, :50])
    assert main(["reconstruct", "--data", str(forward / "forward.npz"), "--mri", str(tmp_path / "rect.npy"),
                 "--out", str(tmp_path / "bad")]) == 2
    assert main(["reconstruct", "--data", str(forward / "forward.npz"), "--out", str(tmp_path / "bad")]) == 2
    assert main(["reconstruct", "--method", "tikhonov", "--data", str(tmp_path / "missing.npz"),
                 "--out", str(tmp_path / "bad")]) == 2


@pytest.mark.slow
def test_reconstruct_cli_reads_snirf_data_and_a_nifti_mri(tmp_path, capsys):
    """`nirst forward` writes SNIRF; its MRI written as a NIfTI slice turned by 90° and offset,
    registered back with --mri-rotation/--mri-shift: DRI from SNIRF + NIfTI equals DRI from the
    npz + npy; unregistered, the MRI does not cover the disk and is refused."""
    import nibabel

    forward = tmp_path / "forward"
    assert main(["forward", "--out", str(forward), "--mesh-spacing", "6", "--noise", "0.01", "--angle-offset", "7"]) == 0
    mri = np.load(forward / "mri.npy")  # 100 × 100 over [-41, 41]², y growing with the row
    pixel = 82.0 / 100
    affine = np.eye(4)  # voxel (i, j) at (-y, x) of the array's pixel (x, y) — a 90° turn — then shifted by (5, -3)
    affine[:2, :2] = [[0.0, -pixel], [pixel, 0.0]]
    affine[:2, 3] = [41.0 - pixel / 2 + 5.0, -41.0 + pixel / 2 - 3.0]
    nibabel.save(nibabel.Nifti1Image(mri.T[:, :, None].astype(np.float32), affine), tmp_path / "mri.nii.gz")
    args = ["reconstruct", "--mesh-spacing", "6", "--basis-size", "8", "--iterations", "2"]
    assert main([*args, "--data", str(forward / "forward.npz"), "--mri", str(forward / "mri.npy"), "--out", str(tmp_path / "npz")]) == 0
    assert main([*args, "--data", str(forward / "forward.snirf"), "--mri", str(tmp_path / "mri.nii.gz"),
                 "--mri-shift", "3", "5", "--mri-rotation", "-90", "--out", str(tmp_path / "snirf")]) == 0
    from_npz = np.load(tmp_path / "npz" / "reconstruction.npz")["chromophores_nodes"]
    from_snirf = np.load(tmp_path / "snirf" / "reconstruction.npz")["chromophores_nodes"]
    np.testing.assert_allclose(from_snirf, from_npz, rtol=1e-5)
    capsys.readouterr()
    assert main([*args, "--data", str(forward / "forward.snirf"), "--mri", str(tmp_path / "mri.nii.gz"),
                 "--out", str(tmp_path / "bad")]) == 2
    assert "does not cover" in capsys.readouterr().err


def _frequency_domain_forward(tmp_path, *settings):
    """`nirst forward` at 100 MHz: flat chromophores, a 22 mm inclusion of scattering amplitude 1.6."""
    forward = tmp_path / "forward"
    assert main(["forward", "--out", str(forward), "--mesh-spacing", "6", "--frequency-mhz", "100", *settings,
                 "--background", "12.2,4.8,28", "--lesion", "12.2,4.8,28", "--inclusion", "15,10,22",
                 "--lesion-scatter", "1.6,1", "--noise", "0.005", "--phase-noise", "0.3"]) == 0
    return forward


@pytest.mark.extended  # the same reconstruction through the API is a slow test (test_frequency_domain_recon.py)
def test_reconstruct_cli_reconstructs_frequency_domain_data_with_phase(tmp_path):
    """`nirst forward --frequency-mhz 100` data were reconstructed as CW before, silently; now ln A
    and phase are fitted jointly and --fit-scatter maps a scattering inclusion."""
    forward = _frequency_domain_forward(tmp_path)
    truth = np.load(forward / "forward.npz")
    assert truth["frequency_hz"] == 1e8 and truth["phase"].shape == truth["ln_amplitude"].shape
    assert main(["reconstruct", "--method", "tikhonov", "--data", str(forward / "forward.snirf"), "--mesh-spacing", "6",
                 "--basis-size", "10", "--iterations", "4", "--fit-scatter", "--out", str(tmp_path / "fd")]) == 0
    result = np.load(tmp_path / "fd" / "reconstruction.npz")
    amplitude = result["scatter_nodes"][0]
    inside = truth["scatter_nodes"][0] > 1.3
    assert amplitude[inside].mean() > 1.2 and abs(amplitude[~inside].mean() - 1.0) < 0.05, (amplitude[inside].mean(), amplitude[~inside].mean())
    assert result["scatter_images"].shape == (2, 100, 100)
    summary = json.loads((tmp_path / "fd" / "convergence.json").read_text())
    assert summary["frequency_hz"] == 1e8 and summary["misfit"][-1] < summary["misfit"][0]


def test_reconstruct_cli_refuses_what_frequency_domain_data_cannot_do(tmp_path, capsys):
    """Phase is never dropped nor made up: the refusals of `nirst reconstruct` on FD/CW mixes."""
    small = ("--mesh-spacing", "8", "--wavelengths", "661,785,913")
    forward = _frequency_domain_forward(tmp_path, *small)
    truth = np.load(forward / "forward.npz")
    cw = tmp_path / "cw"
    assert main(["forward", "--out", str(cw), *small]) == 0
    refusals = {
        ("--data", str(cw / "forward.npz"), "--fit-scatter"): "--fit-scatter needs frequency-domain data",
        ("--data", str(cw / "forward.npz"), "--phase-weight", "2"): "applies to frequency-domain data",
        ("--data", str(forward / "forward.npz"), "--reference", str(cw / "reference.snirf")): "differ in modulation frequency",
        ("--data", str(forward / "forward.npz"), "--frequency-mhz", "80"): "differs from",
        ("--data", str(forward / "forward.npz"), "--method", "znet", "--mri", str(forward / "mri.npy"),
         "--checkpoint", str(tmp_path)): "the networks take CW ln amplitudes",
    }
    for extra, message in refusals.items():
        capsys.readouterr()
        assert main(["reconstruct", "--method", "tikhonov", "--mesh-spacing", "8", *extra, "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
    np.savez(tmp_path / "fd_only.npz", **{k: truth[k] for k in ("ln_amplitude", "wavelengths_nm", "frequency_hz")})
    assert main(["reconstruct", "--method", "tikhonov", "--data", str(tmp_path / "fd_only.npz"), "--out", str(tmp_path / "bad")]) == 2
    assert "frequency-domain data need both" in capsys.readouterr().err
    from nirst_jax.formats import NirfastData, write_nirfast_data

    write_nirfast_data(tmp_path / "fd.paa", NirfastData(np.array([[0, 1]]), np.ones((1, 1), bool), np.ones((1, 1)),
                                                        np.full((1, 1), 10.0), np.array([785.0])))
    assert main(["reconstruct", "--method", "tikhonov", "--data", str(tmp_path / "fd.paa"), "--out", str(tmp_path / "bad")]) == 2
    assert "does not record its modulation frequency: give --frequency-mhz" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_reconstruct_cli_names_a_corrupt_input_file(tmp_path, capsys):
    """Truncated .npz/.npy and a broken .png end in an error naming the file, not a traceback."""
    data = tmp_path / "data.npz"
    np.savez(data, ln_amplitude=np.zeros((3, 16, 15)), wavelengths_nm=np.array([661.0, 785.0, 808.0]))
    np.save(tmp_path / "mri.npy", np.ones((32, 32)))
    (tmp_path / "mri.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    truncated = {}
    for name in ("data.npz", "mri.npy"):
        content = (tmp_path / name).read_bytes()
        truncated[name] = tmp_path / f"truncated-{name}"
        truncated[name].write_bytes(content[: len(content) // 2])
    cases = [
        (truncated["data.npz"], tmp_path / "mri.npy"),
        (data, truncated["mri.npy"]),
        (data, tmp_path / "mri.png"),
    ]
    for data_file, mri_file in cases:
        status = main(["reconstruct", "--data", str(data_file), "--mri", str(mri_file), "--mesh-spacing", "6",
                       "--out", str(tmp_path / "out")])
        error = capsys.readouterr().err
        bad = data_file if data_file.name.startswith("truncated") else mri_file
        assert status == 2 and str(bad) in error and "corrupt" in error, error
    status = main(["reconstruct", "--data", str(data), "--mri", str(tmp_path / "mri.npy"), "--weight", "0",
                   "--mesh-spacing", "6", "--out", str(tmp_path / "out")])
    assert status == 2 and "weight α must be finite and > 0, got 0.0" in capsys.readouterr().err


def _prepared(*argv):
    """The checked inputs of `nirst reconstruct ARGV` (`_reconstruct._prepare`), without reconstructing."""
    return _reconstruct._prepare(build_parser().parse_args(["reconstruct", *argv]))


def test_reconstruct_cli_refuses_data_whose_recorded_slots_differ_from_the_set_up(tmp_path):
    """`nirst forward` records each measurement's detector slot: data of the right shape whose
    slots hold other pairs (here each source's detectors in reverse order) are refused, not
    reconstructed with every measurement on the wrong pair."""
    from nirst_jax.geometry import RimFibres

    layout = RimFibres(16).layout()
    arrays = dict(ln_amplitude=np.zeros((3, 16, 15)), wavelengths_nm=np.array([690.0, 785.0, 830.0]),
                  active=np.asarray(layout.active))
    for detector_index, accepted in ((np.asarray(layout.detector_index), True),
                                     (np.asarray(layout.detector_index)[:, ::-1], False)):
        np.savez(tmp_path / "data.npz", detector_index=detector_index, **arrays)
        argv = ("--method", "tikhonov", "--mesh-spacing", "8", "--data", str(tmp_path / "data.npz"))
        if accepted:
            _prepared(*argv)
        else:
            with pytest.raises(ValueError, match=r"measurement slots \(detector_index\) are not those of 16 rim fibres"):
                _prepared(*argv)


def test_reconstruct_cli_takes_and_records_the_optodes_of_a_nirfast_mesh(nirfast_dir, tmp_path):
    """NIRFAST's circle2000_86 numbers its fibres clockwise from −11.25°: `--mesh` builds the model
    on the file's optodes (rim fibres from 0°, used before, sit 8 mm and more away) and the
    set-up recorded for convergence.json rebuilds them."""
    from nirst_jax.geometry import OptodePositions, optodes_from_dict
    from nirst_jax.mesh import read_nirfast

    prefix = nirfast_dir / "circle2000_86_stnd"
    nirfast = read_nirfast(prefix)
    np.savez(tmp_path / "data.npz", ln_amplitude=np.zeros((3, 16, 15)), wavelengths_nm=np.array([690.0, 785.0, 830.0]))
    mesh, model, *_, setup = _prepared("--method", "tikhonov", "--mesh", str(prefix), "--data", str(tmp_path / "data.npz"))
    detectors = np.asarray(model.detectors.positions(mesh.nodes))
    assert np.abs(detectors - nirfast.detectors).max() < 0.5
    ring = np.asarray(nj.physics.rim_positions(mesh, 16))
    assert np.linalg.norm(ring - nirfast.detectors, axis=1).min() > 8.0
    assert setup["mesh"] == {"kind": "nirfast", "prefix": str(prefix), "nodes": mesh.n_nodes, "sha256": mesh.content_hash}
    assert optodes_from_dict(json.loads(json.dumps(setup["optodes"]))) == OptodePositions.from_nirfast(nirfast)
    assert setup["wavelengths_nm"] == [690.0, 785.0, 830.0] and setup["frequency_hz"] == 0.0 and "mri" not in setup
    assert setup["domain"]["kind"] == "polygon"  # the file's optodes are placed by position on its outline


@pytest.mark.slow
def test_reconstruct_cli_uses_the_optodes_of_a_nirfast_mesh(nirfast_dir, tmp_path):
    """End to end on circle2000_86: a lesion reconstructed with `--mesh` sits where it was
    simulated (the ring set-up used before, counter-clockwise from 0°, put it at its mirror
    image, 43 mm away); convergence.json records the file's optodes. One Gauss-Newton step on a
    coarse basis, uncalibrated."""
    from nirst_jax.geometry import OptodePositions, optodes_from_dict
    from nirst_jax.mesh import read_nirfast

    prefix = nirfast_dir / "circle2000_86_stnd"
    nirfast = read_nirfast(prefix)
    model = nj.SpectralForwardModel.from_nirfast(nirfast, wavelengths_nm=(690.0, 785.0, 830.0))
    nodes = nirfast.mesh.nodes
    centre = 25.0 * np.array([np.cos(np.radians(-60.0)), np.sin(np.radians(-60.0))])
    chromophores = np.repeat(np.array([12.0, 5.0, 30.0])[:, None], len(nodes), axis=1)
    chromophores[:2, np.hypot(*(nodes - centre).T) < 8.0] *= 2.0
    np.savez(tmp_path / "data.npz", ln_amplitude=np.asarray(model(jnp.asarray(chromophores))),
             wavelengths_nm=np.array(model.wavelengths_nm))
    out = tmp_path / "out"
    assert main(["reconstruct", "--method", "tikhonov", "--mesh", str(prefix), "--data", str(tmp_path / "data.npz"),
                 "--basis-size", "8", "--iterations", "1", "--out", str(out)]) == 0
    result = np.load(out / "reconstruction.npz")
    hbt = result["chromophores_nodes"][:2].sum(0)
    found = result["nodes"][hbt > hbt.min() + 0.7 * (hbt.max() - hbt.min())].mean(0)
    assert np.hypot(*(found - centre)) < 6.0, found
    setup = json.loads((out / "convergence.json").read_text())["setup"]
    assert setup["mesh"] == {"kind": "nirfast", "prefix": str(prefix), "nodes": len(nodes), "sha256": nirfast.mesh.content_hash}
    assert optodes_from_dict(setup["optodes"]) == OptodePositions.from_nirfast(nirfast)
    assert setup["wavelengths_nm"] == [690.0, 785.0, 830.0] and setup["frequency_hz"] == 0.0 and "mri" not in setup


def _nifti_mri(path, pixel_mm: float, size: int = 100):
    """A size × size NIfTI MRI slice of `pixel_mm` pixels centred on the origin."""
    import nibabel

    affine = np.diag([pixel_mm, pixel_mm, 1.0, 1.0])
    affine[:2, 3] = -pixel_mm * (size - 1) / 2
    nibabel.save(nibabel.Nifti1Image(np.ones((size, size, 1), np.float32), affine), path)
    return path


def test_reconstruct_cli_refuses_an_mri_out_of_scale_with_the_mesh(tmp_path, capsys):
    """A mesh written in cm inside an MRI in mm is covered by it, so it used to pass; it, the
    reverse and an .npy extent in the wrong unit are refused, naming both sizes in mm."""
    np.savez(tmp_path / "data.npz", ln_amplitude=np.zeros((3, 16, 15)), wavelengths_nm=np.array([661.0, 785.0, 808.0]))
    mri_mm, mri_cm = _nifti_mri(tmp_path / "mm.nii.gz", 1.2), _nifti_mri(tmp_path / "cm.nii.gz", 0.12)
    np.save(tmp_path / "mri.npy", np.ones((50, 50)))
    args = ["reconstruct", "--data", str(tmp_path / "data.npz"), "--out", str(tmp_path / "bad")]
    cases = {
        (str(mri_mm), "--radius", "4.1", "--mesh-spacing", "0.5"): "the mesh is 8.2 mm across but the field of view of the MRI",
        (str(mri_cm), "--mesh-spacing", "8"): "is 12 × 12 mm: more than 5× apart",
        (str(tmp_path / "mri.npy"), "--mri-extent", "-410", "410", "--mesh-spacing", "8"): "820 × 820 mm",
    }
    for (mri, *extra), message in cases.items():
        capsys.readouterr()
        assert main([*args, "--mri", mri, *extra]) == 2
        error = capsys.readouterr().err
        assert message in error and "a mesh in cm with an MRI in mm (or the reverse)?" in error, error
    assert not (tmp_path / "bad").exists()
    *_, image, _, _, _, _ = _prepared("--data", str(tmp_path / "data.npz"), "--mri", str(mri_mm), "--mesh-spacing", "8")
    assert image.field_of_view_mm == pytest.approx((120.0, 120.0))


def test_reconstruct_cli_refuses_rim_fibres_off_a_disk_centred_at_the_origin(tmp_path):
    """Evenly spaced rim fibres are a set-up of a disk about the origin (its image grid is
    [−R, R]²): a data file's mesh elsewhere needs its optodes given, not guessed."""
    mesh = nj.disk_mesh(30.0, 8.0, center=(5.0, -3.0))
    np.savez(tmp_path / "data.npz", ln_amplitude=np.zeros((3, 12, 11)), wavelengths_nm=np.array([661.0, 785.0, 808.0]),
             nodes=mesh.nodes, elements=mesh.elements)
    with pytest.raises(ValueError, match="centred at the origin.*--optodes FILE"):
        _prepared("--method", "tikhonov", "--data", str(tmp_path / "data.npz"), "--fibres", "12")
    centred = nj.disk_mesh(30.0, 8.0)
    np.savez(tmp_path / "data.npz", ln_amplitude=np.zeros((3, 12, 11)), wavelengths_nm=np.array([661.0, 785.0, 808.0]),
             nodes=centred.nodes, elements=centred.elements)
    *_, record = _prepared("--method", "tikhonov", "--data", str(tmp_path / "data.npz"), "--fibres", "12")
    assert record["domain"] == {"kind": "disk", "radius_mm": pytest.approx(30.0)}


def test_reconstruct_cli_records_the_mri_and_its_registration(tmp_path):
    """The set-up for convergence.json: the disk, its rim fibres, the MRI file and the
    registration given on the command line."""
    from nirst_jax.geometry import RigidRegistration, RimFibres, optodes_from_dict

    np.savez(tmp_path / "data.npz", ln_amplitude=np.zeros((3, 12, 11)), wavelengths_nm=np.array([661.0, 785.0, 808.0]))
    mri = _nifti_mri(tmp_path / "mri.nii.gz", 1.2)
    mesh, *_, setup = _prepared("--data", str(tmp_path / "data.npz"), "--mri", str(mri), "--mesh-spacing", "8",
                                "--fibres", "12", "--mri-shift", "1.5", "-2", "--mri-rotation", "30")
    setup = json.loads(json.dumps(setup))
    assert setup["mesh"] == {"kind": "disk", "radius_mm": 41.0, "spacing_mm": 8.0, "nodes": mesh.n_nodes,
                             "sha256": mesh.content_hash}
    assert optodes_from_dict(setup["optodes"]) == RimFibres(12) and setup["domain"] == {"kind": "disk", "radius_mm": 41.0}
    assert setup["mri"] == {"file": str(mri), "shift_mm": [1.5, -2.0], "rotation_deg": 30.0, "center_mm": [0.0, 0.0]}
    registration = {k: setup["mri"][k] for k in ("shift_mm", "rotation_deg", "center_mm")}
    assert RigidRegistration.from_dict(registration) == RigidRegistration((1.5, -2.0), 30.0)
    assert setup["scatter"] == [1.0, 1.0] and setup["optodes_from"] == "12 rim fibres"
