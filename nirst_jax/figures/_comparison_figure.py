"""Side-by-side images: truth and each method, per phantom and chromophore."""

from __future__ import annotations

from matplotlib.figure import Figure
import numpy as np  # noqa: E402

from ..evaluation import DERIVED_NAMES, DERIVED_UNITS  # noqa: E402
from ._extent import imshow_extent  # noqa: E402


def comparison_figure(truth, images: dict, mask, extent, labels=None, chromophores=(0, 1, 2), title: str = ""):
    """A grid: one row per phantom and chromophore, columns truth then each method.

    Every row shares the truth's colour scale (widened to the methods' 1st–99th percentiles),
    so values can be compared across methods.

    Arguments:
        truth: (P, C, H, W) true HbO (µM), Hb (µM), water (%) (C = 3), optionally followed by
            HbT and StO2 (C = 5, from `nirst_jax.evaluation.derived_maps`).
        images: method → (P, C, H, W) reconstructions.
        mask: (H, W) pixels inside the disk.
        extent: the grid's `PixelGrid.extent` (x0, x1, y0, y1), or (low, high) for [low, high]², mm.
        labels: P phantom names (default "phantom i").
        chromophores: which of HbO (0), Hb (1), water (2), HbT (3), StO2 (4) to show.
        title: figure title.

    Returns:
        The matplotlib figure.
    """
    truth = np.asarray(truth, float)
    labels = [f"phantom {i}" for i in range(len(truth))] if labels is None else list(labels)
    columns = {"truth": truth, **{k: np.asarray(v, float) for k, v in images.items()}}
    rows = [(p, c) for p in range(len(truth)) for c in chromophores]
    # Constrained layout leaves room for the suptitle above the column titles (tight_layout does not).
    figure = Figure(figsize=(2.6 * len(columns) + 0.8, 2.4 * len(rows)), layout="constrained")
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for r, (p, c) in enumerate(rows):
        shown = np.concatenate([v[p, c][mask] for v in columns.values()])
        low, high = np.nanpercentile(shown, [1, 99])
        low, high = min(low, np.nanmin(truth[p, c][mask])), max(high, np.nanmax(truth[p, c][mask]))
        for j, (name, values) in enumerate(columns.items()):
            axis = axes[r, j]
            handle = axis.imshow(np.ma.masked_where(~mask, values[p, c]), origin="lower",
                                 extent=imshow_extent(extent), vmin=low, vmax=high, cmap="viridis")
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(name)
            if j == 0:
                axis.set_ylabel(f"{labels[p]}\n{DERIVED_NAMES[c]}")
        figure.colorbar(handle, ax=axes[r, -1], label=DERIVED_UNITS[c], fraction=0.046)
    if title:
        figure.suptitle(title)
    return figure
