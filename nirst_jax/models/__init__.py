"""Networks: Z-Net, Y-Net, the Z-Net without MRI, the post-processing U-Net, and their inputs."""

from ._inputs import evenly_spaced_fibres, fibre_mask, mask_signals, normalise_mri, random_fibre_masks
from ._spec import LGN_DAMPINGS, MODEL_NAMES, PHYSICS_GRADIENTS, PHYSICS_MODELS, STUDY_ARCHITECTURE, ModelSpec, parameter_count
from ._unet import UNet
from ._ynet import YNet
from ._znet import ZNet

__all__ = [
    "MODEL_NAMES",
    "LGN_DAMPINGS",
    "PHYSICS_GRADIENTS",
    "PHYSICS_MODELS",
    "STUDY_ARCHITECTURE",
    "UNet",
    "ModelSpec",
    "YNet",
    "ZNet",
    "evenly_spaced_fibres",
    "fibre_mask",
    "mask_signals",
    "normalise_mri",
    "parameter_count",
    "random_fibre_masks",
]
