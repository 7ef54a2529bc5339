"""The supervised loss: MSE of normalised images inside the disk, or its per-image logarithm."""

from __future__ import annotations

import jax.numpy as jnp

LOG_MSE_FLOOR = 1e-4
"""Added to each image's MSE (normalised units²) before the logarithm: about 50 dB PSNR for a
target spanning 3 standard deviations, so images already that close stop pulling the gradient."""


def masked_mse(predicted, target, mask):
    """Mean square error over the pixels inside `mask`, averaged over channels and batch.

    Arguments:
        predicted, target: (B, C, H, W) normalised images.
        mask: (H, W) bool.

    Returns:
        Scalar.
    """
    return jnp.mean(_image_mse(predicted, target, mask))


def masked_log_mse(predicted, target, mask):
    """Mean over phantoms and channels of log(MSE + `LOG_MSE_FLOOR`), each image's MSE over the
    pixels inside `mask`: minimising it maximises the mean PSNR (a per-image logarithm of the
    MSE) rather than the MSE pooled over phantoms, which easy phantoms barely move.

    Arguments:
        predicted, target: (B, C, H, W) normalised images.
        mask: (H, W) bool.

    Returns:
        Scalar.
    """
    return jnp.mean(jnp.log(_image_mse(predicted, target, mask) + LOG_MSE_FLOOR))


_LOSSES = {"mse": masked_mse, "log-mse": masked_log_mse}
DATA_LOSSES = tuple(_LOSSES)
"""Names of the supervised losses (`TrainConfig.data_loss`)."""


def data_loss(name: str):
    """The supervised loss called `name` (`DATA_LOSSES`): (predicted, target, mask) → scalar."""
    if name not in _LOSSES:
        raise ValueError(f"data_loss must be one of {DATA_LOSSES}, got {name!r}")
    return _LOSSES[name]


def _image_mse(predicted, target, mask):
    """(B, C) MSE of each image inside `mask`."""
    if predicted.shape != target.shape:
        raise ValueError(f"prediction {predicted.shape} and target {target.shape} differ in shape")
    mask = jnp.asarray(mask, predicted.dtype)
    return jnp.sum(jnp.square(predicted - target) * mask, (-2, -1)) / jnp.sum(mask)
