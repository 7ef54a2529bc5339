"""Evaluation: image metrics inside the disk mask, derived maps, ROI contrast, per-phantom
scores of several methods, region values of known phantoms, batched Gauss-Newton."""

from ._derived import DERIVED_NAMES, DERIVED_UNITS, circle_roi, derived_maps, roi_contrast
from ._methods import GaussNewtonMethod, Recalibrated, RefinedNetwork, reconstruct_batch
from ._metrics import data_range, image_metrics, mse, psnr, ssim, ssim_map
from ._regions import hbt_contrast, region_masks, region_means, region_table
from ._scores import CHROMOPHORE_LABELS, METRIC_LABELS, METRICS, Scores
from ._symmetry_average import SymmetryAveraged

__all__ = [
    "CHROMOPHORE_LABELS",
    "DERIVED_NAMES",
    "DERIVED_UNITS",
    "GaussNewtonMethod",
    "Recalibrated",
    "RefinedNetwork",
    "METRICS",
    "METRIC_LABELS",
    "Scores",
    "SymmetryAveraged",
    "circle_roi",
    "data_range",
    "derived_maps",
    "hbt_contrast",
    "image_metrics",
    "mse",
    "psnr",
    "reconstruct_batch",
    "region_masks",
    "region_means",
    "region_table",
    "roi_contrast",
    "ssim",
    "ssim_map",
]
