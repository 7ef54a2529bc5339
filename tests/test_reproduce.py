"""`nirst reproduce --scale ci` end to end (every stage and section), resume, `nirst experiment`,
`nirst evaluate` and `nirst demo` on its outputs."""

import json
import re
import shutil
import time

import numpy as np
import pytest

from nirst_jax.cli import main
from nirst_jax.datasets import Dataset
from nirst_jax.evaluation import Scores, image_metrics
from nirst_jax.experiments import EXPERIMENTS, METHODS, SCALES, Study, demo, reproduce

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    reproduce(folder, "ci", progress=False)
    return folder


def test_report_has_every_section_table_and_figure_with_real_numbers(study):
    report = (study / "report.md").read_text()
    total = 0
    for name in EXPERIMENTS:
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
    truth = dataset.read("targets", ids)
    for method in METHODS:
        images = np.load(study / "reconstructions" / "test" / f"{method.lower().replace(' + ', '-').replace(' ', '-')}.npy")
        assert images.shape == truth.shape and (images[:, :, ~dataset.image_mask] == 0).all()
        expected = image_metrics(images.astype(float), truth.astype(float), dataset.image_mask)
        for metric in ("mse", "psnr", "ssim"):
            np.testing.assert_allclose(scores.values[method][metric], expected[metric], rtol=1e-4)
    # DRI from the exact mesh and MRI must beat a homogeneous guess at the true background.
    background = np.where(dataset.image_mask, dataset.read("background", ids)[:, :, None, None], 0)
    flat = image_metrics(background, truth, dataset.image_mask)["mse"]
    assert (scores.values["DRI"]["mse"].mean(0) < np.asarray(flat).mean(0)).all()


def test_resume_reuses_every_stage_and_a_changed_scale_is_refused(study):
    started = time.perf_counter()
    reproduce(study, "ci", experiments=["lesion-contrast"], progress=False)
    assert time.perf_counter() - started < 60  # nothing re-simulated or retrained
    with pytest.raises(ValueError, match="other settings"):
        Study(study, SCALES["small"])


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
    assert main(["evaluate", "--data", str(study / "data"), "--no-dri", "--out", str(out)]) == 2
    assert main(["evaluate", "--data", str(study / "data"), "--run", "Z-Net=/nonexistent", "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_demo_writes_its_report_and_figure(study, tmp_path):
    folder = tmp_path / "demo"
    shutil.copytree(study, folder)  # the demo's stages at the ci scale are already done there
    report = demo(folder, scale=SCALES["ci"], progress=False).read_text()
    assert "![Truth, DRI and Z-Net](demo.png)" in report and (folder / "demo.png").stat().st_size > 10_000
    assert "| DRI | water (%) |" in report and "| Z-Net | water (%) |" in report
