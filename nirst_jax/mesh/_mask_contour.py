"""The outline of a binary mask image (a segmented MRI slice) as a contour in mm."""

from __future__ import annotations

import numpy as np
from contourpy import LineType, contour_generator
from scipy.ndimage import gaussian_filter, label

from ._contour import closed_contour, polygon_area


def mask_contour(mask, pixel_spacing_mm, *, origin_mm=(0.0, 0.0)) -> np.ndarray:
    """The boundary of the one region of a binary mask, as a closed polygon in mm.

    Pixel (row i, column j) has its centre at x = origin_x + j·dx, y = origin_y + i·dy: y grows
    with the row, as for every image array in nirst-jax (a PNG, whose rows run top-down, is
    flipped when read by `nirst mesh`). The mask is smoothed by a Gaussian of one
    pixel before the 0.5 level line is traced (marching squares, contourpy), so the contour
    follows the shape the mask was drawn from rather than the pixels' staircase.

    Arguments:
        mask: (H, W) booleans (or 0/1), True inside the domain; one connected region, no holes.
        pixel_spacing_mm: (dy, dx) pixel size in mm, or one number for square pixels.
        origin_mm: (x, y) of the centre of pixel (0, 0) in mm.

    Returns:
        (P, 2) counter-clockwise vertices in mm, for `polygon_mesh`.

    Raises:
        ValueError: a mask that is not 2D and binary, empty, touches the image border, has
            several regions or holes, or bad spacing.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2D image, got shape {mask.shape}")
    values = np.unique(mask)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"mask must be binary (0/1 or booleans), got values {values[:5].tolist()}")
    mask = mask.astype(bool)
    spacing = np.broadcast_to(np.asarray(pixel_spacing_mm, dtype=np.float64), (2,))
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise ValueError(f"pixel_spacing_mm must be positive, got {pixel_spacing_mm!r}")
    origin = np.asarray(origin_mm, dtype=np.float64)
    if origin.shape != (2,) or not np.isfinite(origin).all():
        raise ValueError(f"origin_mm must be (x, y), got {origin_mm!r}")
    if not mask.any():
        raise ValueError("mask is empty")
    if mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
        raise ValueError("mask touches the image border: pad it so the domain's outline is inside the image")
    _, regions = label(mask)
    if regions != 1:
        raise ValueError(f"mask has {regions} separate regions; mesh one domain at a time")
    _, holes = label(~mask)
    if holes != 1:
        raise ValueError(f"mask has {holes - 1} hole(s); a domain with holes is not supported")

    smooth = gaussian_filter(mask.astype(np.float64), 1.0, mode="constant")
    lines = contour_generator(z=smooth, line_type=LineType.Separate).lines(0.5)
    line = max(lines, key=lambda points: abs(polygon_area(points)))  # (column, row) pixel coordinates
    points = np.column_stack([origin[0] + line[:, 0] * spacing[1], origin[1] + line[:, 1] * spacing[0]])
    return closed_contour(points, "mask outline")
