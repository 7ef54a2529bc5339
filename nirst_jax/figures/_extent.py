"""The grid extent figures take: (low, high) for a square [low, high]², or (x0, x1, y0, y1)."""

from __future__ import annotations

import numpy as np


def imshow_extent(extent) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) for `imshow` from (low, high) or (x0, x1, y0, y1) mm (`PixelGrid.extent`)."""
    values = tuple(float(v) for v in np.ravel(extent))
    if len(values) == 2:
        values = values + values
    if len(values) != 4 or not np.isfinite(values).all() or values[1] <= values[0] or values[3] <= values[2]:
        raise ValueError(f"extent must be (low, high) or (x0, x1, y0, y1) mm with increasing bounds, got {extent!r}")
    return values
