"""`nirst reproduce` and `nirst demo`: the study end to end, resumable, with a markdown report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .._atomic import atomic_path, save_figure, save_json
from .._compiled_programs import release_compiled_programs
from ..evaluation import Scores
from ..figures import comparison_figure
from ._experiments import EXPERIMENTS, run_experiment
from ._report import machine_description, write_report
from ._scale import SCALES, Scale
from ._study import NETWORKS, Study


def _scale(scale) -> Scale:
    if isinstance(scale, Scale):
        return scale
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {list(SCALES)}")
    return SCALES[scale]


def reproduce(folder, scale="small", experiments=None, progress: bool = True) -> Path:
    """Simulate → train → reconstruct (DRI and networks) → evaluate → experiments → report.

    Every stage reuses what an interrupted earlier call left in `folder`.

    Arguments:
        folder: output folder.
        scale: a `Scale` or a preset name ("ci", "demo", "small", "paper").
        experiments: names from `EXPERIMENTS` (default all).
        progress: show progress bars.

    Returns:
        Path of the report (folder/report.md).
    """
    study = Study(folder, _scale(scale), progress)
    names = list(EXPERIMENTS) if experiments is None else list(experiments)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiments {unknown}; choose from {list(EXPERIMENTS)}")
    timings = study.folder / "timings.json"
    seconds = json.loads(timings.read_text()) if timings.exists() else {}

    def stage(name, work):
        started = time.perf_counter()
        print(f"[{name}]", flush=True)
        result = work()
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        save_json(timings, seconds)
        release_compiled_programs()  # a whole study compiles past the kernel's memory-mapping limit
        return result

    stage("simulate the dataset", lambda: study.dataset)
    if study.scale.learned_data_mesh_spacing_mm is not None:
        stage("simulate the learned methods' dataset", lambda: study.learned_dataset)
    for network in NETWORKS:
        stage(f"train {network}", lambda network=network: study.trained(network))
    # The training programs are dead weight now: dropping them here, where little the
    # experiments use is compiled yet (a dataset's simulation program at most), spares a
    # mid-experiment clear that recompiles DRI and every network (≈ 1 min at the `small` scale).
    release_compiled_programs(fraction=0.0)
    sections = [stage(name, lambda name=name: run_experiment(study, name)) for name in names]
    write_report(study, sections, seconds)
    return study.folder / "report.md"


def demo(folder, scale="demo", progress: bool = True) -> Path:
    """The quick end-to-end run: a small dataset, one Z-Net, DRI and Z-Net on a few test phantoms.

    Arguments:
        folder: output folder.
        scale: a `Scale` or preset name (default "demo": 600 phantoms, minutes on a CPU).
        progress: show progress bars.

    Returns:
        Path of the report (folder/report.md), which shows folder/demo.png.
    """
    started = time.perf_counter()
    study = Study(folder, _scale(scale), progress)
    print(f"[1/3] simulating {study.scale.count} phantoms", flush=True)
    dataset = study.dataset
    print("[2/3] training a Z-Net", flush=True)
    study.trained("Z-Net")
    print("[3/3] reconstructing test phantoms with DRI and Z-Net", flush=True)
    test = study.test_set("test")
    images = {name: study.reconstruct(test, name) for name in ("DRI", "Z-Net")}
    scores = Scores.compute(images, test.truth, test.mask, test.ids)
    grid = dataset.config.grid()
    figure = comparison_figure(test.truth, images, test.mask, grid.extent,
                               labels=[f"test #{i}" for i in test.ids], title="Truth, DRI and Z-Net")
    save_figure(figure, study.folder / "demo.png")
    s = study.scale
    text = "\n\n".join([
        "# nirst-jax demo",
        f"{s.count} phantoms of the study's distribution simulated on a {dataset.mesh.n_nodes}-node mesh "
        f"({s.image_size}×{s.image_size} images), a Z-Net of width {s.width:g} trained {s.epochs} epochs on "
        f"{len(dataset.indices('train'))} of them, then {len(test.ids)} unseen test phantoms reconstructed by "
        "MRI-guided Gauss-Newton (DRI) and by the Z-Net.",
        "![Truth, DRI and Z-Net](demo.png)",
        "**MSE, PSNR and SSIM inside the disk, mean ± std**",
        scores.table(),
        f"Total {time.perf_counter() - started:.0f} s on {machine_description()}. The full study: "
        "`nirst reproduce --scale small` (CPU, ≈ 2 h) or `--scale paper` (GPU).",
    ]) + "\n"
    with atomic_path(study.folder / "report.md") as temporary:
        temporary.write_text(text)
    return study.folder / "report.md"
