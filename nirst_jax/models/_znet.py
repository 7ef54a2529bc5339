"""Z-Net (Feng et al., Optica 9, 264 (2022), Eqs. 1–7): signal up-sampling path, MRI down-sampling
path and a decoder that concatenates both with its own features at every scale."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from ._layers import (
    ConvBNReLU,
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


def scaled(channels: int, width: float) -> int:
    """`channels` × `width`, at least 1 (width < 1 gives the small test models)."""
    return max(1, int(round(channels * width)))


class ZNet(nnx.Module):
    """Z-Net: (signals, MRI) → (HbO, Hb, water) images, in normalised units.

    Channel widths at `width` = 1 (sizes for a 100-pixel image):
        signal path  (Eqs. 1–2): 16×15×L →[3×3: 128, 256]→ pool 8×7 → bilinear 6×6×256 (φ⁰)
                     → up 12×12×128 (φ¹) → 25×25×64 (φ²) → 50×50×32 (φ³) → 100×100×16 (φ⁴)
        MRI path     (Eqs. 3–4): 100×100×1 →[1×1: 16, 16] (ψ⁰) → [3×3 ×2 + max-pool]
                     50×50×32 (ψ¹) → 25×25×64 (ψ²) → 12×12×128 (ψ³) → 6×6×256 (ψ⁴)
        decoder      (Eqs. 5–6): up(φ⁰ ⊕ ψ⁴) 12×12×256 (ϕ⁰) → up(φ¹ ⊕ ψ³ ⊕ ϕ⁰) 25×25×128
                     → up(φ² ⊕ ψ² ⊕ ϕ¹) 50×50×64 → up(φ³ ⊕ ψ¹ ⊕ ϕ²) 100×100×32 (ϕ³)
        output       (Eq. 7): 3×3 conv + BN + ReLU on φ⁴ ⊕ ψ⁰ ⊕ ϕ³ (32), then a 3×3 conv to 3
                     channels, linear (the targets are normalised, so they can be negative).
    Each "up" is a 2×2 stride-2 transposed convolution and a 3×3 convolution (BN + ReLU after
    each); where doubling misses the pooled size (12 → 24 vs 25) a bilinear resize aligns it.
    3.53 M parameters at `width` 1 and 9 wavelengths (the study: 3.48 M).

    Arguments:
        wavelengths: input channels of the signal image (L).
        image_size: output pixels per side (≥ 16).
        use_mri: False builds the study's ablation without the MRI path (Fig. S5).
        width: multiplier of every channel count.
        margin: pixels of zeros around the image the network works on (its output is cropped
            back), so the disk's extreme pixels, which touch the image border, see the same
            neighbourhood as the rest of its rim instead of the convolutions' padding.
        upsampling: "transposed" (the study's) or "resize" (`ConvBNReLU`; 4.83 M parameters).
        rngs: `nnx.Rngs` for initialisation.
    """

    def __init__(
        self,
        *,
        wavelengths: int = 9,
        image_size: int = 100,
        use_mri: bool = True,
        width: float = 1.0,
        margin: int = 0,
        upsampling: str = "transposed",
        rngs: nnx.Rngs,
    ):
        c = lambda n: scaled(n, width) if n else 0  # noqa: E731
        self.margin = margin
        self.sizes = pyramid(image_size + 2 * margin)
        self.use_mri = use_mri
        bottleneck = c(256)
        up = [c(128), c(64), c(32), c(16)]
        down = [c(32), c(64), c(128), c(256)] if use_mri else [0, 0, 0, 0]
        mri_features = c(16) if use_mri else 0
        decoder = [c(256), c(128), c(64), c(32)]
        self.signal_in = ConvBNReLU(wavelengths, c(128), rngs=rngs)
        self.signal_in2 = ConvBNReLU(c(128), bottleneck, rngs=rngs)
        self.signal_up = nnx.List(
            [UpConv(a, b, upsampling=upsampling, rngs=rngs) for a, b in zip([bottleneck] + up[:-1], up)]
        )
        if use_mri:
            self.mri_in = DoubleConv(1, mri_features, kernel=1, rngs=rngs)
            self.mri_down = nnx.List(
                [DoubleConv(a, b, rngs=rngs) for a, b in zip([mri_features] + down[:-1], down)]
            )
        inputs = [bottleneck + down[3], up[0] + down[2] + decoder[0], up[1] + down[1] + decoder[1], up[2] + down[0] + decoder[2]]
        self.decoder = nnx.List([UpConv(a, b, upsampling=upsampling, rngs=rngs) for a, b in zip(inputs, decoder)])
        self.head = ConvBNReLU(up[3] + mri_features + decoder[3], c(32), rngs=rngs)
        self.out = nnx.Conv(c(32), 3, (3, 3), padding="SAME", rngs=rngs)

    def __call__(self, signals, mri=None, *, train: bool = False):
        """Arguments:
            signals: (B, L, S, K) normalised ln amplitudes.
            mri: (B, H, H) normalised MRI (ignored without the MRI path).
            train: batch statistics (True) or running averages (False) in BN.

        Returns:
            (B, 3, H, H) normalised HbO, Hb, water.
        """
        sizes = self.sizes
        x = self.signal_in2(self.signal_in(signal_image(signals), train), train)
        phi = [resize(max_pool(x), sizes[4])]
        for layer, size in zip(self.signal_up, sizes[3::-1]):
            phi.append(layer(phi[-1], size, train))
        if self.use_mri:
            size = sizes[0] - 2 * self.margin
            if mri is None or mri.shape[1] != size:
                raise ValueError(f"this Z-Net needs an MRI of {size}×{size} pixels, got {None if mri is None else mri.shape}")
            psi = [self.mri_in(pad_image(mri_image(mri), self.margin), train)]
            for layer in self.mri_down:
                psi.append(max_pool(layer(psi[-1], train)))
        else:
            psi = [jnp.zeros(phi[k].shape[:3] + (0,), phi[k].dtype) for k in range(5)][::-1]
        decoded = jnp.concatenate([phi[0], psi[4]], -1)
        for n, (layer, size) in enumerate(zip(self.decoder, sizes[3::-1])):
            decoded = layer(decoded, size, train)
            decoded = jnp.concatenate([phi[n + 1], psi[3 - n], decoded], -1)
        return crop_image(output_image(self.out(self.head(decoded, train))), self.margin)
