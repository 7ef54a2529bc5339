"""Gauss-Newton reconstruction: bases, regularisers (Tikhonov, DRI, soft prior), calibration."""

from ._basis import ReconstructionBasis
from ._calibration import calibrate, fit_homogeneous, nominal_background
from ._gauss_newton import GaussNewton, GaussNewtonResult, GaussNewtonStatus, check_weight
from ._reconstructor import (
    DEFAULT_BASIS_SIZE,
    DEFAULT_WEIGHTS,
    METHODS,
    Reconstruction,
    Reconstructor,
    image_grid,
)
from ._regularisers import dri_matrix, similarity_matrix, soft_prior_matrix, tikhonov_matrix
from ._segmentation import otsu_threshold, region_memberships

__all__ = [
    "DEFAULT_BASIS_SIZE",
    "DEFAULT_WEIGHTS",
    "GaussNewton",
    "GaussNewtonResult",
    "GaussNewtonStatus",
    "METHODS",
    "Reconstruction",
    "ReconstructionBasis",
    "Reconstructor",
    "calibrate",
    "check_weight",
    "dri_matrix",
    "fit_homogeneous",
    "image_grid",
    "nominal_background",
    "otsu_threshold",
    "region_memberships",
    "similarity_matrix",
    "soft_prior_matrix",
    "tikhonov_matrix",
]
