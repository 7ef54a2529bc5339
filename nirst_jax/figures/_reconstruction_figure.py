"""Figure of a reconstruction: HbO, Hb, water, HbT and StO2 maps (optionally over the truth)."""

from __future__ import annotations

from matplotlib.figure import Figure
import numpy as np  # noqa: E402

from ..evaluation import DERIVED_NAMES, DERIVED_UNITS, derived_maps  # noqa: E402
from ._extent import imshow_extent  # noqa: E402

PANELS = tuple(zip(DERIVED_NAMES, DERIVED_UNITS))


def reconstruction_figure(
    images: np.ndarray,
    extent: tuple[float, ...],
    mask: np.ndarray,
    truth: np.ndarray | None = None,
    title: str = "",
    scatter: np.ndarray | None = None,
):
    """Panels of HbO, Hb, water, HbT and StO2 with colour bars and units (and of the
    scattering amplitude and power when reconstructed).

    Arguments:
        images: (3, H, W) reconstructed HbO (µM), Hb (µM), water (%).
        extent: the grid's `PixelGrid.extent` (x0, x1, y0, y1), or (low, high) for [low, high]², mm.
        mask: (H, W) pixels inside the mesh.
        truth: (3, H, W) true images, shown as a first row on the same colour scales.
        title: figure title.
        scatter: (2, H, W) reconstructed scattering amplitude a (mm⁻¹) and power b, shown
            in a last row.

    Returns:
        The matplotlib figure.
    """
    rows = [("reconstruction", derived_maps(images, mask))]
    if truth is not None:
        rows.insert(0, ("truth", derived_maps(truth, mask)))
    n_rows = len(rows) + (scatter is not None)
    figure = Figure(figsize=(16, 3.3 * n_rows))
    axes = figure.subplots(n_rows, 5, squeeze=False)
    for j, (name, unit) in enumerate(PANELS):
        values = np.concatenate([maps[j][np.isfinite(maps[j])] for _, maps in rows])
        low, high = (np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0))
        for i, (label, maps) in enumerate(rows):
            shown = axes[i, j].imshow(
                maps[j], origin="lower", extent=imshow_extent(extent), vmin=low, vmax=high, cmap="viridis"
            )
            axes[i, j].set_title(f"{label}: {name}")
            axes[i, j].set_xlabel("x (mm)")
            axes[i, j].set_ylabel("y (mm)")
            figure.colorbar(shown, ax=axes[i, j], label=unit, fraction=0.046)
    if scatter is not None:
        for j, (name, unit) in enumerate((("scatter amplitude a", "mm⁻¹"), ("scatter power b", ""))):
            values = np.where(mask, scatter[j], np.nan)
            shown = axes[-1, j].imshow(values, origin="lower", extent=imshow_extent(extent), cmap="magma")
            axes[-1, j].set_title(f"reconstruction: {name}")
            axes[-1, j].set_xlabel("x (mm)")
            axes[-1, j].set_ylabel("y (mm)")
            figure.colorbar(shown, ax=axes[-1, j], label=unit, fraction=0.046)
        for axis in axes[-1, 2:]:
            axis.set_visible(False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
