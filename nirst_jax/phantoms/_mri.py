"""Synthetic MRI images of phantoms: grey levels per region plus relative Gaussian noise."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._coverage import paint


def mri_image(fractions, greys, background_grey, mask):
    """Noise-free MRI: the background grey level with regions painted over it, 0 off the mask.

    Arguments:
        fractions: (K, H, W) pixel coverage of each region (later regions on top).
        greys: (K,) grey level of each region.
        background_grey: grey level of the background.
        mask: (H, W) pixels inside the object.

    Returns:
        (H, W) image.
    """
    greys = jnp.asarray(greys, jnp.float32)[:, None]
    image = paint(jnp.asarray([background_grey], jnp.float32), fractions, greys)[0]
    return jnp.where(mask, image, 0.0)


def add_mri_noise(image, level: float, key):
    """Image · (1 + level·n), n standard normal per pixel: noise relative to the grey level.

    Arguments:
        image: (H, W) noise-free image.
        level: relative standard deviation (0.04 = 4 %).
        key: `jax.random` key.

    Returns:
        (H, W) noisy image (0 stays 0).
    """
    return image * (1 + level * jax.random.normal(key, image.shape, image.dtype))
