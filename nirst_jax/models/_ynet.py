"""Y-Net (Lan et al., Photoacoustics 20, 100197 (2020)) adapted to NIRST: a signal encoder and an
MRI encoder, one decoder with skips from both."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from ._layers import (
    DoubleConv,
    UpConv,
    crop_image,
    max_pool,
    mri_image,
    output_image,
    pad_image,
    pyramid,
    resize,
    signal_image,
)
from ._znet import scaled

ENCODER_WIDTHS = (20, 40, 80, 160, 240)


class YNet(nnx.Module):
    """Y-Net: (signals, MRI) → (HbO, Hb, water) images, in normalised units.

    Lan et al. feed raw photoacoustic data and a beamformed image to two encoders; here the
    signal image (16×15×L, bilinearly resized to the image size) and the MRI take their places.
    Each encoder is a U-Net encoder: [3×3 conv + BN + ReLU] ×2 at 100 (20 channels), then
    max-pool + [3×3] ×2 at 50, 25, 12, 6 with 40, 80, 160, 240 channels. The bottleneck fuses
    both 6×6 codes ([3×3] ×2 → 240); four decoder levels each up-sample (2×2 transposed conv +
    3×3 conv), concatenate the skips of *both* encoders at that size and apply [3×3] ×2
    (160, 80, 40, 20 channels); a 1×1 conv gives the 3 output channels (linear).
    5.96 M parameters at `width` 1 and 9 wavelengths (the study: 6.09 M).

    Arguments:
        wavelengths: input channels of the signal image (L).
        image_size: output pixels per side (≥ 16).
        width: multiplier of every channel count.
        margin, upsampling: as `ZNet`'s.
        rngs: `nnx.Rngs` for initialisation.
    """

    use_mri = True

    def __init__(
        self,
        *,
        wavelengths: int = 9,
        image_size: int = 100,
        width: float = 1.0,
        margin: int = 0,
        upsampling: str = "transposed",
        rngs: nnx.Rngs,
    ):
        widths = [scaled(n, width) for n in ENCODER_WIDTHS]
        self.margin = margin
        self.sizes = pyramid(image_size + 2 * margin)

        def encoder(channels):
            return nnx.List([DoubleConv(a, b, rngs=rngs) for a, b in zip([channels] + widths[:-1], widths)])

        self.signal_encoder = encoder(wavelengths)
        self.mri_encoder = encoder(1)
        self.bottleneck = DoubleConv(2 * widths[4], widths[4], rngs=rngs)
        self.up = nnx.List([UpConv(a, b, upsampling=upsampling, rngs=rngs) for a, b in zip(widths[:0:-1], widths[3::-1])])
        self.fuse = nnx.List([DoubleConv(3 * b, b, rngs=rngs) for b in widths[3::-1]])
        self.out = nnx.Conv(widths[0], 3, (1, 1), rngs=rngs)

    @staticmethod
    def _encode(layers, x, train):
        skips = [layers[0](x, train)]
        for layer in layers[1:]:
            skips.append(layer(max_pool(skips[-1]), train))
        return skips

    def __call__(self, signals, mri, *, train: bool = False):
        """Arguments:
            signals: (B, L, S, K) normalised ln amplitudes.
            mri: (B, H, H) normalised MRI.
            train: batch statistics (True) or running averages (False) in BN.

        Returns:
            (B, 3, H, H) normalised HbO, Hb, water.
        """
        size = self.sizes[0] - 2 * self.margin
        if mri is None or mri.shape[1] != size:
            raise ValueError(f"this Y-Net needs an MRI of {size}×{size} pixels, got {None if mri is None else mri.shape}")
        from_signal = self._encode(self.signal_encoder, resize(signal_image(signals), self.sizes[0]), train)
        from_mri = self._encode(self.mri_encoder, pad_image(mri_image(mri), self.margin), train)
        x = self.bottleneck(jnp.concatenate([from_signal[4], from_mri[4]], -1), train)
        for level, (up, fuse) in zip(range(3, -1, -1), zip(self.up, self.fuse)):
            x = up(x, self.sizes[level], train)
            x = fuse(jnp.concatenate([x, from_signal[level], from_mri[level]], -1), train)
        return crop_image(output_image(self.out(x)), self.margin)
