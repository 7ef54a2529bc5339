"""`nirst reproduce --scale ci` end to end (every stage and section), resume, `nirst experiment`,
`nirst evaluate` and `nirst demo` on its outputs."""

import json
import re
import shutil

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from nirst_jax.cli import main
from nirst_jax.datasets import Dataset
from nirst_jax.evaluation import GaussNewtonMethod, Scores, SymmetryAveraged, image_metrics
from nirst_jax.experiments import EXPERIMENTS, METHODS, SCALES, Study, _experiments, _study, demo, reproduce
from nirst_jax.training import TrainedNetwork

pytestmark = pytest.mark.slow


# The study's own experiments; CI's 40-minute budget leaves the rest (refinement, realistic,
# shape mismatch, fine mesh, 8 fibres: ≈ 8 min more) to the extended test below. "shapes" runs DRI on
# the finer mesh (`FINE_DRI`) and the shape families (≈ 1 min at this scale).
CI_EXPERIMENTS = ("test-split", "three-inclusions", "no-mri", "lesion-contrast", "shapes")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    reproduce(folder, "ci", experiments=CI_EXPERIMENTS, progress=False)
    return folder


def test_report_has_every_section_table_and_figure_with_real_numbers(study):
    check_report(study, CI_EXPERIMENTS)


@pytest.mark.extended
def test_every_experiment_completes_the_report(study):
    reproduce(study, "ci", progress=False)  # the remaining experiments; the others are reused
    check_report(study, EXPERIMENTS)


def check_report(study, names):
    """report.md holds each named section with its tables and figures, and no NaN."""
    report = (study / "report.md").read_text()
    total = 0
    for name in names:
        assert f'<a id="{name}"></a>' in report
        section = json.loads((study / name / "result.json").read_text())
        assert section["title"] in report and section["figures"] and section["tables"]
        total += len(section["figures"])
        for _, path in section["figures"]:
            assert f"]({path})" in report and (study / path).stat().st_size > 10_000
        for _, table in section["tables"]:
            assert table in report
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert len(figures) == total
    table = json.loads((study / "test-split" / "result.json").read_text())["tables"][0][1]
    for method in METHODS:
        assert f"| {method} | water (%) |" in table
    assert not re.search(r"\bnan\b", report, re.IGNORECASE)


def test_scores_are_the_metrics_of_the_cached_reconstructions(study):
    dataset = Dataset(study / "data")
    scores = Scores.read_csv(study / "test-split" / "scores.csv")
    ids = dataset.indices("test")[: SCALES["ci"].test_count]
    assert scores.phantoms.tolist() == ids.tolist() and scores.methods == METHODS
    truth = dataset.read("targets", ids).astype(float)
    mask = dataset.image_mask
    for method in METHODS:
        images = np.load(study / "reconstructions" / "test" / f"{method.lower().replace(' + ', '-').replace(' ', '-')}.npy")
        assert images.shape == truth.shape and (images[:, :, ~mask] == 0).all()
        # Independent of nirst_jax.evaluation: NumPy for MSE and PSNR, scikit-image's SSIM map.
        images = images.astype(float)
        mse = ((images - truth)[:, :, mask] ** 2).mean(-1)
        peak = truth[:, :, mask].max(-1)
        ssim = [[structural_similarity(p, t, data_range=r, win_size=7, full=True)[1][mask].mean()
                 for p, t, r in zip(prediction, target, top)] for prediction, target, top in zip(images, truth, peak)]
        np.testing.assert_allclose(scores.values[method]["mse"], mse, rtol=1e-4)
        np.testing.assert_allclose(scores.values[method]["psnr"], 10 * np.log10(peak**2 / mse), rtol=1e-4)
        np.testing.assert_allclose(scores.values[method]["ssim"], ssim, rtol=1e-4, atol=1e-6)
    # DRI from the exact mesh and MRI must beat a homogeneous guess at the true background.
    background = np.where(dataset.image_mask, dataset.read("background", ids)[:, :, None, None], 0)
    flat = image_metrics(background, truth, dataset.image_mask)["mse"]
    assert (scores.values["DRI"]["mse"].mean(0) < np.asarray(flat).mean(0)).all()


def test_resume_reuses_every_stage_and_a_changed_scale_is_refused(study, monkeypatch):
    def rerun(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    # Nothing may be re-simulated, retrained or reconstructed again.
    monkeypatch.setattr(_study, "simulate_dataset", rerun)
    monkeypatch.setattr(_study, "Trainer", rerun)
    monkeypatch.setattr(GaussNewtonMethod, "__call__", rerun)
    monkeypatch.setattr(TrainedNetwork, "__call__", rerun)
    reproduce(study, "ci", experiments=["lesion-contrast", "test-split"], progress=False)
    # Other experiment code (new rows, other text) recomputes the section, from the cached images.
    written = (study / "lesion-contrast" / "result.json").stat().st_mtime_ns
    reproduce(study, "ci", experiments=["lesion-contrast"], progress=False)
    assert (study / "lesion-contrast" / "result.json").stat().st_mtime_ns == written
    monkeypatch.setattr(_experiments, "EXPERIMENTS_CODE", "other code")
    reproduce(study, "ci", experiments=["lesion-contrast"], progress=False)
    assert json.loads((study / "lesion-contrast" / "result.json").read_text())["code"] == "other code"
    monkeypatch.undo()
    reproduce(study, "ci", experiments=["lesion-contrast"], progress=False)  # and back
    assert json.loads((study / "lesion-contrast" / "result.json").read_text())["code"] == _experiments.EXPERIMENTS_CODE
    with pytest.raises(ValueError, match="other settings"):
        Study(study, SCALES["small"])


def test_retraining_a_network_invalidates_its_cached_images_and_reports(study, tmp_path):
    """Caches are keyed by what produced them: after Z-Net's parameters change, its cached test
    images and the test-split report are recomputed; DRI's cache is reused."""
    folder = tmp_path / "study"
    shutil.copytree(study, folder)
    before = Scores.read_csv(folder / "test-split" / "scores.csv")
    dri = folder / "reconstructions" / "test" / "dri.npy"
    dri_written = dri.stat().st_mtime_ns
    # "Retrain" Z-Net: its best checkpoint becomes the fibre-dropout Z-Net's (same architecture).
    best = folder / "runs" / "z-net" / "checkpoints" / "best"
    shutil.rmtree(best)
    shutil.copytree(folder / "runs" / "z-net-fibre-dropout" / "checkpoints" / "best", best)
    reproduce(folder, "ci", experiments=["test-split"], progress=False)
    after = Scores.read_csv(folder / "test-split" / "scores.csv")
    np.testing.assert_allclose(after.values["Z-Net"]["mse"], before.values["Z-Net fibre dropout"]["mse"], rtol=1e-5)
    assert not np.allclose(after.values["Z-Net"]["mse"], before.values["Z-Net"]["mse"])
    assert dri.stat().st_mtime_ns == dri_written
    stamp = json.loads((folder / "reconstructions" / "test" / "z-net.json").read_text())
    assert stamp["method"]["checkpoint"] == Study(folder, SCALES["ci"]).checkpoint_fingerprint("Z-Net")


@pytest.mark.extended
def test_experiment_and_evaluate_commands(study, tmp_path, capsys):
    assert main(["experiment", "eight-fibres", "--scale", "ci", "--out", str(study), "--no-progress"]) == 0
    assert "Generalisation to 8 of the 16 fibres" in capsys.readouterr().out
    out = tmp_path / "evaluation"
    args = ["evaluate", "--data", str(study / "data"), "--run", f"Z-Net={study / 'runs' / 'z-net'}",
            "--count", "3", "--examples", "1", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    scores = Scores.read_csv(out / "scores.csv")
    assert scores.methods == ("DRI", "Z-Net") and len(scores.phantoms) == 3
    reference = Scores.read_csv(study / "test-split" / "scores.csv")
    np.testing.assert_allclose(scores.values["Z-Net"]["mse"], reference.values["Z-Net"]["mse"][:3], rtol=1e-4)
    assert (out / "box_plots.png").exists() and (out / "examples.png").exists() and (out / "metrics.md").exists()
    # Refinement rows: the network's images made to explain the data by 3 DRI steps.
    refined = tmp_path / "refined"
    assert main(args[:-1] + [str(refined), "--refine", "3", "--no-dri"]) == 0
    scores = Scores.read_csv(refined / "scores.csv")
    assert scores.methods == ("Z-Net", "Z-Net + refine")
    np.testing.assert_allclose(scores.values["Z-Net"]["mse"], reference.values["Z-Net"]["mse"][:3], rtol=1e-4)
    assert not np.allclose(scores.values["Z-Net + refine"]["mse"], scores.values["Z-Net"]["mse"])
    assert main(args[:-1] + [str(refined), "--refine", "-1"]) == 2
    # Symmetrised rows: the network's images averaged over the disk's 8 symmetries.
    symmetrised = tmp_path / "symmetrised"
    assert main(args[:-1] + [str(symmetrised), "--symmetry-average", "--no-dri"]) == 0
    scores = Scores.read_csv(symmetrised / "scores.csv")
    assert scores.methods == ("Z-Net", "Z-Net symmetrised")
    dataset = Dataset(study / "data")
    ids = dataset.indices("test")[:3]
    averaged = SymmetryAveraged.for_network(TrainedNetwork(study / "runs" / "z-net"))(
        dataset.read("ln_amplitude", ids).astype(float), dataset.read("mri", ids))
    mse = ((averaged - dataset.read("targets", ids))[:, :, dataset.image_mask] ** 2).mean(-1)
    np.testing.assert_allclose(scores.values["Z-Net symmetrised"]["mse"], mse, rtol=1e-4)
    assert not np.allclose(scores.values["Z-Net symmetrised"]["mse"], scores.values["Z-Net"]["mse"])
    assert main(["evaluate", "--data", str(study / "data"), "--no-dri", "--out", str(out)]) == 2
    assert main(["evaluate", "--data", str(study / "data"), "--run", "Z-Net=/nonexistent", "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_demo_writes_its_report_and_figure(study, tmp_path):
    folder = tmp_path / "demo"
    shutil.copytree(study, folder)  # the demo's stages at the ci scale are already done there
    report = demo(folder, scale=SCALES["ci"], progress=False).read_text()
    assert "![Truth, DRI and Z-Net](demo.png)" in report and (folder / "demo.png").stat().st_size > 10_000
    assert "| DRI | water (%) |" in report and "| Z-Net | water (%) |" in report


def test_learned_methods_train_on_the_finer_store_and_reconstruct_on_the_main_mesh(study):
    """LGN and DRI + U-Net train on the main phantoms simulated on the learned-data mesh, with the scale's
    learned loss, reconstruct on the main mesh, and take test data calibrated to their own training
    store's reference; every network but DRI + U-Net validates on the scale's `validation_phantoms`."""
    main_data, learned = Dataset(study / "data"), Dataset(study / "data-learned")
    scale = SCALES["ci"]
    assert learned.config.mesh_spacing_mm == scale.learned_data_mesh_spacing_mm < scale.mesh_spacing_mm
    assert learned.count == main_data.count
    np.testing.assert_array_equal(learned.read("targets", np.arange(8)), main_data.read("targets", np.arange(8)))
    ids = main_data.indices("test")[:2]
    for network in ("LGN", "DRI + U-Net"):
        run = study / "runs" / network.lower().replace(" + ", "-").replace(" ", "-")
        meta = json.loads((run / "config.json").read_text())
        assert meta["dataset"]["sha256"] == learned.fingerprint
        assert meta["train"]["physics_mesh_spacing_mm"] == scale.mesh_spacing_mm
        assert meta["train"]["data_loss"] == scale.learned_loss
        assert meta["train"]["model"]["width"] == (scale.lgn_network_width if network == "LGN" else scale.width)
        assert meta["train"]["validation_phantoms"] == (scale.validation_phantoms if network == "LGN"
                                                        else scale.dri_unet_validation_phantoms)
        cached = np.load(study / "reconstructions" / "test" / f"{run.name}.npy")[:2]
        ln_amplitude = main_data.read("ln_amplitude", ids).astype(float) - main_data.reference + learned.reference
        images = TrainedNetwork(run, "best")(ln_amplitude, main_data.read("mri", ids))
        np.testing.assert_allclose(cached, images, rtol=1e-4, atol=1e-4)
    assert Dataset(study / "data-learned").fingerprint != main_data.fingerprint
    first_epochs = {}
    for run in ("z-net", "z-net-hybrid"):  # the Z-Net family validates on the scale's subset too
        meta = json.loads((study / "runs" / run / "config.json").read_text())
        assert meta["train"]["validation_phantoms"] == scale.validation_phantoms
        first_epochs[run] = json.loads((study / "runs" / run / "metrics.jsonl").read_text().splitlines()[0])
        assert first_epochs[run]["val_data"] > 0
    # The hybrid is Z-Net's run with the physics term in its last epochs, branched from Z-Net's run
    # folder before them: the same records (to their timings: copied, not trained again).
    hybrid = json.loads((study / "runs" / "z-net-hybrid" / "config.json").read_text())["train"]
    assert hybrid["physics_from_epoch"] == scale.epochs - scale.physics_epochs > 0 and hybrid["init_from"] is None
    assert first_epochs["z-net-hybrid"]["physics_weight"] == 0.0
    assert first_epochs["z-net-hybrid"] == first_epochs["z-net"]
    # The fine-mesh section's physics terms: the truth's at the noise floor, below the networks'.
    terms = _experiments._physics_terms(Study(study, scale, progress=False), "fine-mesh", ("Z-Net", "Z-Net hybrid"))
    amplitude_noise = np.log(np.abs(1 + 0.02 * np.random.default_rng(0).standard_normal(10**6)))  # 2 %
    floor = np.mean(amplitude_noise**2) * np.mean(1 / np.asarray(main_data.normalisation.signal_std) ** 2)
    assert 0.6 * floor < terms["truth"] < 2 * floor < min(terms["Z-Net"], terms["Z-Net hybrid"]), (terms, floor)


def test_the_fibre_dropout_network_trains_its_own_epochs(tmp_path):
    """`Scale.fibre_dropout_epochs` sets the epochs of "Z-Net fibre dropout" alone (None: the scale's)."""
    small = Study(tmp_path / "small", SCALES["small"], progress=False)
    assert small.train_config("Z-Net fibre dropout").epochs == SCALES["small"].fibre_dropout_epochs == 60
    assert small.train_config("Z-Net").epochs == small.train_config("Z-Net hybrid").epochs == 40
    ci = Study(tmp_path / "ci", SCALES["ci"], progress=False)
    assert ci.train_config("Z-Net fibre dropout").epochs == SCALES["ci"].epochs


def test_scales_refuse_an_inverse_crime_for_the_fine_mesh_dri():
    """DRI's finer reconstruction mesh must stay coarser than the data of the fine-mesh sets."""
    from dataclasses import replace

    for scale in SCALES.values():
        assert scale.dri_mesh_spacing_mm is None or scale.dri_mesh_spacing_mm > scale.fine_mesh_spacing_mm
    with pytest.raises(ValueError, match="inverse crime"):
        replace(SCALES["small"], dri_mesh_spacing_mm=SCALES["small"].fine_mesh_spacing_mm)
    for spacing in (SCALES["small"].fine_mesh_spacing_mm, SCALES["small"].mesh_spacing_mm):
        with pytest.raises(ValueError, match="learned_data_mesh_spacing_mm"):
            replace(SCALES["small"], learned_data_mesh_spacing_mm=spacing)
    with pytest.raises(ValueError, match="learned_loss"):
        replace(SCALES["small"], learned_loss="l1")
    with pytest.raises(ValueError, match="lgn_width"):
        replace(SCALES["small"], lgn_width=0.0)
    for name in ("test_count", "validation_phantoms"):
        for count in (0, 2.5, True):
            with pytest.raises(ValueError, match=name):
                replace(SCALES["small"], **{name: count})
    with pytest.raises(ValueError, match=r"physics_epochs \(41\) must be at most epochs \(40\)"):
        replace(SCALES["small"], physics_epochs=41)
    with pytest.raises(ValueError, match="fibre_dropout_epochs must be a positive integer or None"):
        replace(SCALES["small"], fibre_dropout_epochs=0)
    assert SCALES["ci"].lgn_network_width != SCALES["ci"].width  # the CI study checks LGN gets its own width
