"""Recovered vs true values per region of a known phantom (the study's Table S2 style)."""

from __future__ import annotations

import numpy as np

from ..phantoms import Coverage, Phantom
from ._derived import roi_contrast
from ._scores import CHROMOPHORE_LABELS


def region_masks(phantom: Phantom, grid, mask) -> dict[str, np.ndarray]:
    """Label → (H, W) pixels wholly inside that region (and the disk); "background" too."""
    masks = phantom.region_masks(Coverage.pixels(grid), threshold=1.0)
    return {label: inside & np.asarray(mask) for label, inside in masks.items()}


def region_means(images, masks: dict) -> dict[str, np.ndarray]:
    """Label → (3,) mean HbO, Hb, water of (3, H, W) images over that region's pixels."""
    images = np.asarray(images, float)
    return {label: images[:, inside].mean(-1) for label, inside in masks.items() if inside.any()}


def region_table(truth, images: dict, masks: dict) -> str:
    """Markdown: per region and chromophore, the true mean and each method's mean (relative error).

    Arguments:
        truth: (3, H, W) true images.
        images: method → (3, H, W) reconstruction.
        masks: from `region_masks`.
    """
    true = region_means(truth, masks)
    recovered = {name: region_means(image, masks) for name, image in images.items()}
    lines = ["| region | chromophore | truth | " + " | ".join(images) + " |", "|---|---|---|" + "---|" * len(images)]
    for label, values in true.items():
        for c, chromophore in enumerate(CHROMOPHORE_LABELS):
            cells = [f"{r[label][c]:.2f} ({100 * (r[label][c] / values[c] - 1):+.1f} %)" for r in recovered.values()]
            lines.append(f"| {label} | {chromophore} | {values[c]:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def hbt_contrast(images, roi, mask) -> float:
    """HbT (HbO + Hb) mean in `roi` over the rest of the disk, from (3, H, W) images."""
    images = np.asarray(images, float)
    return float(roi_contrast(images[0] + images[1], roi, mask))
