"""Shared step of the experiments: reconstruct a test set with several methods and score them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._atomic import atomic_path, save_figure
from ..evaluation import CHROMOPHORE_LABELS, Scores
from ..figures import box_plots, comparison_figure
from ._section import Section
from ._study import Study, TestSet


def relative(path: Path, study: Study) -> str:
    return str(Path(path).relative_to(study.folder))


def write_scores(images: dict, test: TestSet, folder, what: str, examples: int, extent) -> tuple[Scores, dict]:
    """Score each method's images on `test`; write scores.csv, metrics.md, box_plots.png, examples.png.

    Arguments:
        images: method → (B, 3, H, H) reconstructions of `test`.
        test: the phantoms and their truth.
        folder: output folder.
        what: a short description of the phantoms for captions.
        examples: how many phantoms the examples figure shows.
        extent: (low, high) of the image grid in mm.

    Returns:
        (scores, file name → caption of each file written).
    """
    if examples < 1:
        raise ValueError(f"examples must be ≥ 1, got {examples}")
    folder = Path(folder)
    scores = Scores.compute(images, test.truth, test.mask, test.ids)
    scores.write_csv(folder / "scores.csv")
    caption = f"MSE, PSNR and SSIM inside the disk, mean ± std over {len(test.ids)} {what}"
    with atomic_path(folder / "metrics.md") as temporary:
        temporary.write_text(f"{caption}\n\n{scores.table()}\n")
    save_figure(box_plots(scores, title=what), folder / "box_plots.png")
    shown = slice(0, min(examples, len(test.ids)))
    figure = comparison_figure(test.truth[shown], {k: v[shown] for k, v in images.items()}, test.mask, extent,
                               labels=[f"#{i}" for i in test.ids[shown]])
    save_figure(figure, folder / "examples.png")
    files = {"scores.csv": caption, "box_plots.png": f"Per-phantom metrics, {what}",
             "examples.png": f"Truth and reconstructions, {what}"}
    return scores, files


def score_methods(study: Study, test: TestSet, methods, section: Section, what: str, active_fibres=None,
                  part: str | None = None) -> Scores:
    """Reconstruct `test` with each method (cached) and add `write_scores`' table and figures to `section`.

    `part`: a section scoring several sets names each; its files go into a subfolder of that
    name and its numbers under `section.numbers[part]`."""
    folder = study.folder / section.key / (part or "")
    images = {name: study.reconstruct(test, name, active_fibres) for name in methods}
    grid = study.dataset.config.grid()
    scores, files = write_scores(images, test, folder, what, study.scale.examples, grid.extent)
    section.tables.append((f"{files['scores.csv']} (per-phantom values: {relative(folder / 'scores.csv', study)})",
                           scores.table()))
    section.figures += [(files[name], relative(folder / name, study)) for name in ("box_plots.png", "examples.png")]
    numbers = section.numbers.setdefault(part, {}) if part else section.numbers
    numbers["mean_psnr"] = {m: scores.mean(m, "psnr").tolist() for m in scores.methods}
    numbers["mean_mse"] = {m: scores.mean(m, "mse").tolist() for m in scores.methods}
    return scores


def psnr_comparison(scores: Scores, ours: str, others) -> tuple[list[str], list[str]]:
    """Chromophores where `ours` has the best mean PSNR among `ours` and `others`, and sentences
    naming the winner where it does not."""
    wins, losses = [], []
    for c, label in enumerate(CHROMOPHORE_LABELS):
        name = label.split()[0]
        mine = scores.mean(ours, "psnr")[c]
        rivals = {o: scores.mean(o, "psnr")[c] for o in others}
        best = max(rivals, key=rivals.get)
        if mine > rivals[best]:
            wins.append(name)
        else:
            losses.append(f"{name}: {best} {rivals[best]:.1f} dB vs {ours} {mine:.1f} dB")
    return wins, losses


def psnr_change_table(before: Scores, after: Scores, change: str, methods=None) -> str:
    """Markdown: mean PSNR per method and chromophore, `before` → `after` (`methods`, default those of `after`)."""
    rows = ["| method | " + " | ".join(f"PSNR {c}, {change}" for c in CHROMOPHORE_LABELS) + " |", "|---|---|---|---|"]
    for m in after.methods if methods is None else methods:
        cells = (f"{a:.1f} → {b:.1f}" for a, b in zip(before.mean(m, "psnr"), after.mean(m, "psnr")))
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def mean_row(scores: Scores, metric: str = "psnr") -> dict[str, np.ndarray]:
    return {m: scores.mean(m, metric) for m in scores.methods}
