"""Image metrics per chromophore, in physical units, inside the disk mask.

- MSE: mean of (prediction − truth)² over mask pixels.
- PSNR: 10·log10(R²/MSE) with the data range R = the true image's maximum inside the mask
  (the peak-value convention: images are 0 outside the disk, so this is also the true
  image's full max − min over the whole grid).
- SSIM: scikit-image's `structural_similarity` map (7×7 uniform window, K1 = 0.01,
  K2 = 0.03, sample covariance, reflected borders, data range R as above), averaged over
  the mask pixels instead of the whole cropped image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _masked_mean(values, mask):
    mask = jnp.asarray(mask, values.dtype)
    return (values * mask).sum((-2, -1)) / mask.sum((-2, -1))


def data_range(truth, mask) -> jnp.ndarray:
    """(...,) the true image's maximum inside the mask."""
    return jnp.where(mask, truth, -jnp.inf).max((-2, -1))


def mse(prediction, truth, mask) -> jnp.ndarray:
    """(...,) mean squared error over the mask of (..., H, W) images."""
    prediction, truth = jnp.asarray(prediction), jnp.asarray(truth)
    return _masked_mean((prediction - truth) ** 2, mask)


def psnr(prediction, truth, mask) -> jnp.ndarray:
    """(...,) peak signal-to-noise ratio in dB (module docstring for the range)."""
    return 10.0 * jnp.log10(data_range(truth, mask) ** 2 / mse(prediction, truth, mask))


def _box_mean(image, size: int):
    pad = size // 2
    padded = jnp.pad(image, [(0, 0)] * (image.ndim - 2) + [(pad, pad), (pad, pad)], mode="symmetric")
    window = (1,) * (image.ndim - 2) + (size, size)
    total = jax.lax.reduce_window(padded, 0.0, jax.lax.add, window, (1,) * image.ndim, "VALID")
    return total / size**2


def ssim_map(prediction, truth, value_range) -> jnp.ndarray:
    """scikit-image's SSIM map of (..., H, W) images with data range (...,)."""
    x, y = jnp.asarray(prediction), jnp.asarray(truth)
    dtype = jnp.result_type(x.dtype, y.dtype, jnp.float32)
    x, y = x.astype(dtype), y.astype(dtype)
    n = SSIM_WINDOW**2
    covariance_norm = n / (n - 1)
    mean_x, mean_y = _box_mean(x, SSIM_WINDOW), _box_mean(y, SSIM_WINDOW)
    var_x = covariance_norm * (_box_mean(x * x, SSIM_WINDOW) - mean_x**2)
    var_y = covariance_norm * (_box_mean(y * y, SSIM_WINDOW) - mean_y**2)
    cov_xy = covariance_norm * (_box_mean(x * y, SSIM_WINDOW) - mean_x * mean_y)
    value_range = jnp.asarray(value_range, dtype)[..., None, None]
    c1, c2 = (SSIM_K1 * value_range) ** 2, (SSIM_K2 * value_range) ** 2
    return ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)) / ((mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2))


def ssim(prediction, truth, mask) -> jnp.ndarray:
    """(...,) structural similarity averaged over the mask (module docstring)."""
    return _masked_mean(ssim_map(prediction, truth, data_range(truth, mask)), mask)


def image_metrics(prediction, truth, mask) -> dict[str, jnp.ndarray]:
    """MSE, PSNR and SSIM of (..., C, H, W) images, each (..., C)."""
    return {
        "mse": mse(prediction, truth, mask),
        "psnr": psnr(prediction, truth, mask),
        "ssim": ssim(prediction, truth, mask),
    }
