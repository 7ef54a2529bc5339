"""The supervised loss: MSE of normalised images inside the disk."""

from __future__ import annotations

import jax.numpy as jnp


def masked_mse(predicted, target, mask):
    """Mean square error over the pixels inside `mask`, averaged over channels and batch.

    Arguments:
        predicted, target: (B, C, H, W) normalised images.
        mask: (H, W) bool.

    Returns:
        Scalar.
    """
    if predicted.shape != target.shape:
        raise ValueError(f"prediction {predicted.shape} and target {target.shape} differ in shape")
    mask = jnp.asarray(mask, predicted.dtype)
    return jnp.sum(jnp.square(predicted - target) * mask) / (jnp.sum(mask) * predicted.shape[0] * predicted.shape[1])
