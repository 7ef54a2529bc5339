"""A minimal segmentation for the soft prior: Otsu's threshold and one-hot region maps."""

from __future__ import annotations

import numpy as np


def otsu_threshold(image, mask=None, bins: int = 256) -> float:
    """Otsu's threshold: the grey level maximising the between-class variance.

    Arguments:
        image: grey-level image.
        mask: pixels to use (default all finite ones).
        bins: histogram bins.

    Returns:
        The threshold (pixels > threshold form the bright class).
    """
    values = np.asarray(image, float)
    keep = np.isfinite(values) if mask is None else (np.asarray(mask, bool) & np.isfinite(values))
    values = values[keep]
    if values.size == 0 or values.min() == values.max():
        raise ValueError("Otsu's threshold needs an image with at least two grey levels")
    counts, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    mean_low = np.cumsum(counts * centers) / np.maximum(weight_low, 1)
    mean_high = (np.sum(counts * centers) - np.cumsum(counts * centers)) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[1:][np.argmax(between)])


def region_memberships(labels, n_regions: int | None = None) -> np.ndarray:
    """One-hot region maps (R, H, W) from an integer label image (H, W).

    Arguments:
        labels: integer labels 0..R−1.
        n_regions: R (default max label + 1).

    Returns:
        (R, H, W) float memberships.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.all(np.mod(labels, 1) == 0) or labels.min() < 0:
        raise ValueError(f"labels must be a 2-D image of non-negative integers, got shape {labels.shape}")
    labels = labels.astype(int)
    count = labels.max() + 1 if n_regions is None else int(n_regions)
    if labels.max() >= count:
        raise ValueError(f"label {labels.max()} ≥ n_regions {count}")
    return (labels[None] == np.arange(count)[:, None, None]).astype(float)
