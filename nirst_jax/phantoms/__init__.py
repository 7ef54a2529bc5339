"""Phantoms: analytic shapes, their coverage of nodes and pixels, random and fixed phantoms, shape
families, MRI."""

from ._config import CONFIGS, REALISTIC, MRIConfig, PhantomConfig, phantom_config
from ._decoupling import Decoupling
from ._coverage import Coverage, node_coverage, paint, pixel_coverage
from ._families import SHAPE_FAMILIES, shape_family
from ._fixed import FIXED_PHANTOMS, benign_lesion, breast, fixed_phantom, malignant_lesion, three_inclusions
from ._mri import add_mri_noise, mri_image
from ._phantom import Phantom, Region
from ._placement import DiskPlacement, RegionPlacement
from ._sampling import PhantomParameters, inside_glandular, sample_phantom
from ._shapes import Circle, Ellipse, StarShape, inside_circle, inside_star
from ._tissue import TissueTable, read_priors

__all__ = [
    "CONFIGS",
    "Circle",
    "Coverage",
    "Decoupling",
    "DiskPlacement",
    "Ellipse",
    "FIXED_PHANTOMS",
    "MRIConfig",
    "Phantom",
    "PhantomConfig",
    "PhantomParameters",
    "REALISTIC",
    "Region",
    "RegionPlacement",
    "SHAPE_FAMILIES",
    "StarShape",
    "TissueTable",
    "add_mri_noise",
    "benign_lesion",
    "breast",
    "fixed_phantom",
    "inside_circle",
    "inside_glandular",
    "inside_star",
    "malignant_lesion",
    "mri_image",
    "node_coverage",
    "paint",
    "phantom_config",
    "pixel_coverage",
    "read_priors",
    "sample_phantom",
    "shape_family",
    "three_inclusions",
]
