"""Learned reconstruction: unrolled networks with the physics in the loop (above `recon` and
`models`, below `training`)."""

from ._build import build_network
from ._dri_unet import DRIStage, DRIUNet, dri_stage
from ._lgn import DEFAULT_ITERATIONS, LearnedGaussNewton, UpdateNetworks
from ._physics import UnrolledPhysics
from ._physics_loss import PhysicsLoss

__all__ = ["DEFAULT_ITERATIONS", "DRIStage", "DRIUNet", "LearnedGaussNewton", "PhysicsLoss", "UnrolledPhysics", "UpdateNetworks", "build_network", "dri_stage"]
