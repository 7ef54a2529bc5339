"""A U-Net that corrects images: the post-processing network of the DRI + U-Net reference."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from ._layers import ConvBNReLU, DoubleConv, UpConv, crop_image, max_pool, output_image, pad_image, pyramid
from ._znet import scaled

UNET_LEVELS = 3
"""2×2 poolings of the encoder (32-pixel images reach 4×4 with the default margin)."""


class UNet(nnx.Module):
    """Images and MRI → a correction of the images (Ronneberger et al., MICCAI 2015).

    Encoder: a `DoubleConv` per level then 2×2 max pooling (32, 64, 128 channels × width and a
    256 × width bottleneck); decoder: an `UpConv` per level, concatenated with the encoder's
    features at that scale, then a 3×3 `ConvBNReLU`; a 3×3 convolution to 3 output channels,
    zero-initialised, so an untrained U-Net returns a zero correction.

    Arguments:
        in_channels: input features (e.g. 3 images and 1 MRI).
        width: multiplier of every channel count.
        margin: zero pixels around the image inside the network (as `ZNet`'s).
        upsampling: "resize" or "transposed" (`ConvBNReLU`).
        rngs: initialisation.
    """

    def __init__(self, in_channels: int, *, width: float = 1.0, margin: int = 2, upsampling: str = "resize",
                 rngs: nnx.Rngs):
        c = [scaled(n, width) for n in (32, 64, 128, 256)]
        self.margin = margin
        self.encoder = nnx.List([DoubleConv(a, b, rngs=rngs) for a, b in zip([in_channels] + c[:UNET_LEVELS - 1], c[:UNET_LEVELS])])
        self.bottleneck = DoubleConv(c[UNET_LEVELS - 1], c[UNET_LEVELS], rngs=rngs)
        decoder_in = c[UNET_LEVELS:0:-1]
        self.up = nnx.List([UpConv(a, b, upsampling=upsampling, rngs=rngs) for a, b in zip(decoder_in, c[UNET_LEVELS - 1::-1])])
        self.merge = nnx.List([ConvBNReLU(2 * b, b, rngs=rngs) for b in c[UNET_LEVELS - 1::-1]])
        self.out = nnx.Conv(c[0], 3, (3, 3), padding="SAME", kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, features, *, train: bool = False):
        """Arguments:
            features: (B, C, H, H) input channels (images first, MRI last, by convention).
            train: batch statistics (True) or running averages (False) in BN.

        Returns:
            (B, 3, H, H) correction.
        """
        x = pad_image(jnp.moveaxis(jnp.asarray(features, jnp.float32), 1, -1), self.margin)
        sizes = pyramid(x.shape[1], UNET_LEVELS)
        skips = []
        for layer in self.encoder:
            skips.append(layer(x, train))
            x = max_pool(skips[-1])
        x = self.bottleneck(x, train)
        for up, merge, skip, size in zip(self.up, self.merge, skips[::-1], sizes[UNET_LEVELS - 1::-1]):
            x = merge(jnp.concatenate([up(x, size, train), skip], -1), train)
        return crop_image(output_image(self.out(x)), self.margin)
