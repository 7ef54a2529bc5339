"""Derived physiological maps (HbT, StO2) and lesion/background contrast inside an ROI."""

from __future__ import annotations

import numpy as np

DERIVED_NAMES = ("HbO", "Hb", "water", "HbT", "StO2")
DERIVED_UNITS = ("µM", "µM", "%", "µM", "%")


def derived_maps(images, mask) -> np.ndarray:
    """HbO, Hb, water, HbT = HbO + Hb and StO2 = 100·HbO/HbT.

    Arguments:
        images: (..., 3, H, W) HbO (µM), Hb (µM), water (%).
        mask: (H, W) pixels inside the disk.

    Returns:
        (..., 5, H, W); NaN outside the mask, and StO2 NaN where HbT ≤ 0.
    """
    images = np.asarray(images, float)
    if images.ndim < 3 or images.shape[-3] != 3:
        raise ValueError(f"images must be (..., 3, H, W) HbO/Hb/water, got shape {images.shape}")
    hbo, hb = images[..., 0, :, :], images[..., 1, :, :]
    hbt = hbo + hb
    with np.errstate(invalid="ignore", divide="ignore"):
        sto2 = np.where(hbt > 0, 100.0 * hbo / hbt, np.nan)
    maps = np.concatenate([images, hbt[..., None, :, :], sto2[..., None, :, :]], axis=-3)
    return np.where(mask, maps, np.nan)


def roi_contrast(image, roi, mask) -> np.ndarray:
    """Mean inside the ROI over mean of the rest of the disk (e.g. HbT tumour/background).

    Arguments:
        image: (..., H, W) one map (e.g. HbT).
        roi: (H, W) boolean region of interest.
        mask: (H, W) pixels inside the disk.

    Returns:
        (...,) the contrast.
    """
    image, roi, mask = np.asarray(image, float), np.asarray(roi, bool), np.asarray(mask, bool)
    inside, outside = roi & mask, mask & ~roi
    if not inside.any():
        raise ValueError("the ROI contains no pixel inside the disk")
    if not outside.any():
        raise ValueError("the ROI covers the whole disk: no background left")
    return image[..., inside].mean(-1) / image[..., outside].mean(-1)


def circle_roi(grid, x_mm: float, y_mm: float, radius_mm: float) -> np.ndarray:
    """(H, W) pixels of `grid` whose centres lie within `radius_mm` of (x, y)."""
    centers = grid.centers()
    return np.hypot(centers[..., 0] - x_mm, centers[..., 1] - y_mm) <= radius_mm
