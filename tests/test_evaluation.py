"""Derived maps, ROI contrast, per-phantom scores and region tables: hand-computed cases."""

import numpy as np
import pytest

from nirst_jax.evaluation import (
    Scores,
    circle_roi,
    derived_maps,
    hbt_contrast,
    mse,
    region_masks,
    region_means,
    region_table,
    roi_contrast,
)
from nirst_jax.figures import box_plots, comparison_figure
from nirst_jax.mesh import PixelGrid
from nirst_jax.phantoms import fixed_phantom


def test_derived_maps_hand_computed():
    mask = np.ones((2, 2), bool)
    mask[0, 0] = False
    images = np.stack([np.full((2, 2), 15.0), np.full((2, 2), 5.0), np.full((2, 2), 40.0)])
    images[:, 1, 1] = (0.0, 0.0, 10.0)
    maps = derived_maps(images, mask)
    assert maps.shape == (5, 2, 2)
    assert np.isnan(maps[:, 0, 0]).all()  # outside the mask
    np.testing.assert_allclose(maps[3, 0, 1], 20.0)  # HbT = HbO + Hb
    np.testing.assert_allclose(maps[4, 0, 1], 75.0)  # StO2 = 100·15/20
    assert np.isnan(maps[4, 1, 1]) and maps[3, 1, 1] == 0  # StO2 undefined where HbT = 0
    batch = derived_maps(np.stack([images, 2 * images]), mask)
    np.testing.assert_allclose(batch[1, 3, 0, 1], 40.0)
    np.testing.assert_allclose(batch[1, 4, 0, 1], 75.0)
    with pytest.raises(ValueError, match="3, H, W"):
        derived_maps(images[:2], mask)


def test_roi_contrast_hand_computed():
    grid = PixelGrid(20, -10.0, 10.0)
    mask = np.hypot(*np.moveaxis(grid.centers(), -1, 0)) < 9.5
    roi = circle_roi(grid, 3.0, -2.0, 2.5)
    image = np.where(roi, 30.0, 20.0)
    np.testing.assert_allclose(roi_contrast(image, roi, mask), 1.5)
    np.testing.assert_allclose(roi_contrast(np.stack([image, 2 * image]), roi, mask), [1.5, 1.5])
    images = np.stack([image * 0.75, image * 0.25, np.full_like(image, 40.0)])
    np.testing.assert_allclose(hbt_contrast(images, roi, mask), 1.5)
    with pytest.raises(ValueError, match="no pixel"):
        roi_contrast(image, circle_roi(grid, 30.0, 30.0, 1.0), mask)
    with pytest.raises(ValueError, match="whole disk"):
        roi_contrast(image, np.ones_like(mask), mask)


@pytest.fixture
def scores():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:24, :24]
    mask = np.hypot(xx - 11.5, yy - 11.5) < 11
    truth = np.where(mask, 10 + 5 * rng.random((4, 3, 24, 24)), 0.0)
    images = {"good": truth + 0.1 * rng.normal(size=truth.shape), "bad": truth + 2.0 * rng.normal(size=truth.shape)}
    return Scores.compute(images, truth, mask, phantoms=[7, 3, 9, 1]), images, truth, mask


def test_scores_compute_table_best_and_csv_round_trip(scores, tmp_path):
    scores, images, truth, mask = scores
    np.testing.assert_allclose(scores.values["bad"]["mse"], mse(images["bad"], truth, mask))
    assert scores.best_method("psnr") == ["good"] * 3 and scores.best_method("mse") == ["good"] * 3
    table = scores.table().splitlines()
    assert len(table) == 2 + 2 * 3 and table[2].startswith("| good | HbO (µM) |")
    mean, std = scores.values["good"]["psnr"][:, 0].mean(), scores.values["good"]["psnr"][:, 0].std()
    assert f"{mean:.1f} ± {std:.1f}" in table[2]
    scores.write_csv(tmp_path / "scores.csv")
    back = Scores.read_csv(tmp_path / "scores.csv")
    assert back.methods == ("good", "bad") and back.phantoms.tolist() == [7, 3, 9, 1]
    for method in back.methods:
        for metric, values in back.values[method].items():
            np.testing.assert_allclose(values, scores.values[method][metric], rtol=1e-5)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a scores CSV"):
        Scores.read_csv(tmp_path / "other.csv")
    with pytest.raises(ValueError, match="do not match"):
        Scores.compute({"x": truth[:2]}, truth, mask)


def test_paired_difference_of_two_methods_and_its_standard_error(scores):
    """`Scores.difference`: per-chromophore mean of the per-phantom differences, and a standard
    error whose ratio to it is scipy's paired t statistic."""
    from scipy.stats import ttest_rel

    scores = scores[0]
    gain, error = scores.difference("good", "bad")
    good, bad = scores.values["good"]["psnr"], scores.values["bad"]["psnr"]
    np.testing.assert_allclose(gain, good.mean(0) - bad.mean(0))
    np.testing.assert_allclose(gain / error, ttest_rel(good, bad, axis=0).statistic)
    assert np.all(gain > 0)
    same, zero = scores.difference("good", "good", "ssim")
    assert np.all(same == 0) and np.all(zero == 0)
    one = Scores(scores.phantoms[:1], {k: {m: v[:1] for m, v in d.items()} for k, d in scores.values.items()})
    assert np.all(np.isnan(one.difference("good", "bad")[1]))


def test_figures_of_scores_and_comparisons(scores):
    scores, images, truth, mask = scores
    figure = box_plots(scores, title="t")
    assert len(figure.axes) == 9
    figure = comparison_figure(truth[:2], {k: v[:2] for k, v in images.items()}, mask, (-41.0, 41.0))
    assert len([a for a in figure.axes if a.images]) == 2 * 3 * 3  # phantoms × chromophores × (truth + 2)


def test_region_table_of_the_truth_recovers_the_phantom_values():
    phantom = fixed_phantom("three-inclusions")
    grid = PixelGrid(64, -41.0, 41.0)
    from nirst_jax.phantoms import Coverage

    mask = np.hypot(*np.moveaxis(grid.centers(), -1, 0)) < 40.5
    truth = phantom.images(Coverage.pixels(grid), mask)
    masks = region_masks(phantom, grid, mask)
    means = region_means(truth, masks)
    np.testing.assert_allclose(means["background"], phantom.background, rtol=1e-6)
    for region in phantom.regions:
        np.testing.assert_allclose(means[region.label], region.chromophores, rtol=1e-6)
    table = region_table(truth, {"perfect": truth, "scaled": 1.1 * truth}, masks)
    assert "(+0.0 %)" in table and "(+10.0 %)" in table
    assert len(table.splitlines()) == 2 + 3 * (len(phantom.regions) + 1)


def test_figures_keep_the_users_matplotlib_backend(tmp_path):
    """Importing and using the figure code must not switch a notebook's backend (it selected
    Agg at import before): a fresh interpreter with the `pdf` backend keeps it, and the
    figures still save as PNG."""
    import subprocess
    import sys

    script = f"""
import matplotlib
matplotlib.use("pdf")
import numpy as np
import nirst_jax.figures, nirst_jax.training
from nirst_jax._atomic import save_figure
from nirst_jax.training._log import loss_figure
figure = loss_figure([{{"epoch": 0, "train_data": 1.0, "val_data": 1.2}}, {{"epoch": 1, "train_data": 0.5, "val_data": 0.7}}])
save_figure(figure, {str(tmp_path / "loss.png")!r})
assert matplotlib.get_backend() == "pdf", matplotlib.get_backend()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recalibrated_dri_on_another_mesh_removes_the_mesh_offset():
    """Data of a homogeneous phantom at 1.2× the background, simulated on a 4 mm mesh and
    calibrated there; DRI on a 5 mm mesh recovers 1.2× once the data are moved to its own
    reference (`Recalibrated`), and is biased by the meshes' offset without (largest mean
    relative error over the chromophores, measured: 2.0 % and 13 %)."""
    import jax.numpy as jnp

    from nirst_jax.evaluation import GaussNewtonMethod, Recalibrated
    from nirst_jax.geometry import MeasurementSetup
    from nirst_jax.mesh import disk_mesh
    from nirst_jax.phantoms import PhantomConfig
    from nirst_jax.physics import PAPER_WAVELENGTHS_NM

    background = jnp.asarray(PhantomConfig().tissue.nominal_background(), float)
    data_mesh, dri_mesh = disk_mesh(41.0, 4.0), disk_mesh(41.0, 5.0)
    setup = MeasurementSetup.disk(image_size=32)
    dri = GaussNewtonMethod(dri_mesh, setup, PAPER_WAVELENGTHS_NM, progress=False)
    data_method = GaussNewtonMethod(data_mesh, setup, PAPER_WAVELENGTHS_NM, progress=False)
    data = np.asarray(data_method.model.homogeneous(1.2 * background, 1.0, 1.0))[None]
    reference = data_method.model.homogeneous(background, 1.0, 1.0)
    recalibrated = Recalibrated(dri, reference, dri.model.homogeneous(background, 1.0, 1.0))
    mri = np.full((1, 32, 32), 50.0)
    mask = dri.image_mask
    error = {}
    for name, method in (("recalibrated", recalibrated), ("raw", dri)):
        images = method(data, mri)[0]
        error[name] = max(float(np.abs(images[c][mask] / (1.2 * background[c]) - 1).mean()) for c in range(3))
    assert error["recalibrated"] < 0.04, error
    assert error["raw"] > 2.5 * error["recalibrated"], error
    assert recalibrated.settings["recalibrated"] and np.array_equal(recalibrated.image_mask, mask)
    with pytest.raises(ValueError, match="references"):
        Recalibrated(dri, reference[:, :3], reference)


@pytest.mark.parametrize("option", [["--examples", "0"], ["--count", "0"]])
def test_evaluate_refuses_bad_counts_before_reading_anything(tmp_path, capsys, option):
    """A count the figure or the split cannot take is refused at once, not after the reconstructions."""
    from nirst_jax.cli import main

    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(tmp_path / "absent"), "--run", f"Z-Net={tmp_path / 'absent-run'}", *option, "--out", str(out)]
    assert main(args) == 2
    assert f"{option[0]} must be ≥ 1, got 0" in capsys.readouterr().err
    assert not out.exists()
