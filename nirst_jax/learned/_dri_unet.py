"""DRI followed by a U-Net that also sees the MRI: the post-processing reference of the learned
Gauss-Newton network (issue #16). It shows what a network adds to DRI without the physics in
the loop; `LearnedGaussNewton` shows what the physics in the loop adds to that.

    t_DRI = normalise(DRI(ln A(s), MRI))        the study's DRI, on the reconstruction mesh
    t     = t_DRI + UNet([t_DRI, MRI])          the U-Net's last layer starts at zero

The DRI stage has no parameters, so training computes it once per phantom
(`nirst_jax.training`, "first stage") and feeds its images to `__call__(prepared=...)`.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from flax import nnx

from ..datasets import Normalisation
from ..evaluation import GaussNewtonMethod, reconstruct_batch
from ..models import UNet
from ..recon import Reconstructor
from ._lgn import Constant


class DRIStage(eqx.Module):
    """Normalised signals and MRI → normalised DRI images (the study's DRI, batched).

    Attributes:
        reconstructor: DRI on the reconstruction mesh (`GaussNewtonMethod.reconstructor`).
        normalisation: the network's normalisation, its reference the homogeneous reference
            phantom on the reconstruction mesh: signals become ln A calibrated to that mesh,
            as measurements are.
        mask: (H, W) pixels inside the reconstruction mesh.
        weight: DRI's α.
    """

    reconstructor: Reconstructor
    normalisation: Normalisation
    mask: jnp.ndarray
    weight: float = eqx.field(static=True)

    def __call__(self, signals, mri):
        """Arguments:
            signals: (B, L, S, K) normalised signals (absent fibres' values are not read).
            mri: (B, H, W) MRI (any grey-level scale: DRI uses grey-level differences relative
                to their range).

        Returns:
            (B, 3, H, W) normalised DRI images (0 outside the mesh), float32.
        """
        dtype = jnp.result_type(float)  # float64 when enabled: DRI's Gauss-Newton runs in it
        ln_amplitude = self.normalisation.ln_amplitude(jnp.asarray(signals, dtype))
        images, _ = reconstruct_batch(self.reconstructor, jnp.asarray(self.weight, dtype),
                                      ln_amplitude, jnp.asarray(mri, dtype))
        return (self.normalisation.targets(images) * jnp.asarray(self.mask, dtype)).astype(jnp.float32)


class DRIUNet(nnx.Module):
    """(signals, MRI) → normalised images: DRI, then a U-Net correction that sees the MRI.

    Arguments:
        stage: the DRI stage.
        width, margin, upsampling: the U-Net's (`nirst_jax.models.UNet`).
        rngs: initialisation.
    """

    def __init__(self, stage: DRIStage, *, width: float = 1.0, margin: int = 2, upsampling: str = "resize",
                 rngs: nnx.Rngs):
        self.stage = Constant(stage)
        self.unet = UNet(4, width=width, margin=margin, upsampling=upsampling, rngs=rngs)

    def prepare(self, signals, mri):
        """The parameter-free first stage: (B, 3, H, W) normalised DRI images."""
        return self.stage.value(signals, mri)

    def __call__(self, signals, mri, train: bool = False, *, prepared=None):
        """Arguments:
            signals: (B, L, S, K) normalised signals.
            mri: (B, H, W) normalised MRI (`normalise_mri`).
            train: batch statistics in BN.
            prepared: `prepare(signals, mri)` when already computed (training caches it).

        Returns:
            (B, 3, H, W) normalised images.
        """
        images = self.prepare(signals, mri) if prepared is None else jnp.asarray(prepared, jnp.float32)
        mask = jnp.asarray(self.stage.value.mask, images.dtype)
        correction = self.unet(jnp.concatenate([images, jnp.asarray(mri, images.dtype)[:, None]], 1), train=train)
        return (images + correction) * mask


def dri_stage(method: GaussNewtonMethod, normalisation: Normalisation, reference_ln_amplitude) -> DRIStage:
    """The DRI stage of `method` for data normalised by `normalisation`.

    Arguments:
        method: a DRI `GaussNewtonMethod`.
        normalisation: the training data's normalisation.
        reference_ln_amplitude: (L, S, K) the homogeneous reference phantom on the method's mesh
            (`SimulationConfig.reference_ln_amplitude(mesh)`).
    """
    if method.method != "dri":
        raise ValueError(f"the first stage is DRI, got a {method.method!r} method")
    return DRIStage(method.reconstructor, normalisation.with_reference(reference_ln_amplitude), jnp.asarray(method.image_mask), method.weight)

