"""Building blocks shared by the networks: conv + BN + ReLU, 2×2 up-convolution, resizing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


UPSAMPLING = ("transposed", "resize")


class ConvBNReLU(nnx.Module):
    """σ(x ∗ k): a convolution (no bias: BN follows), batch normalisation and ReLU.

    Arguments:
        in_channels, out_channels: feature counts.
        kernel: square kernel size (1 or 3 here; 'SAME' padding).
        up: double height and width first: "transposed", a 2×2 transposed convolution with
            stride 2 (the study's); "resize", nearest-neighbour ×2 then a 3×3 convolution
            (without the transposed convolution's 2-periodic checkerboard, Odena et al.,
            Distill 2016; odd, so unshifted; 9/4 of the parameters); None, no up-sampling.
        rngs: `nnx.Rngs` for initialisation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, *, up: str | None = None, rngs: nnx.Rngs):
        if up not in (None, *UPSAMPLING):
            raise ValueError(f"up must be None or one of {UPSAMPLING}, got {up!r}")
        self.resize_first = up == "resize"
        if up == "transposed":
            self.conv = nnx.ConvTranspose(
                in_channels, out_channels, (2, 2), strides=(2, 2), padding="VALID", use_bias=False, rngs=rngs
            )
        else:
            size = 3 if up == "resize" else kernel
            self.conv = nnx.Conv(in_channels, out_channels, (size, size), padding="SAME", use_bias=False, rngs=rngs)
        self.norm = nnx.BatchNorm(out_channels, momentum=0.9, rngs=rngs)

    def __call__(self, x, train: bool):
        if self.resize_first:
            x = jax.image.resize(x, (x.shape[0], 2 * x.shape[1], 2 * x.shape[2], x.shape[3]), "nearest")
        return jax.nn.relu(self.norm(self.conv(x), use_running_average=not train))


class DoubleConv(nnx.Module):
    """Two 3×3 `ConvBNReLU` layers (the study's σ(σ(x ∗ k) ∗ k))."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, *, rngs: nnx.Rngs):
        self.first = ConvBNReLU(in_channels, out_channels, kernel, rngs=rngs)
        self.second = ConvBNReLU(out_channels, out_channels, kernel, rngs=rngs)

    def __call__(self, x, train: bool):
        return self.second(self.first(x, train), train)


class UpConv(nnx.Module):
    """σ(σ(x ⊗ k₂ₓ₂) ∗ k₃ₓ₃): 2×2 up-convolution (`upsampling`, see `ConvBNReLU`) then a 3×3
    convolution, each with BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, upsampling: str = "transposed", rngs: nnx.Rngs):
        self.up = ConvBNReLU(in_channels, out_channels, up=upsampling, rngs=rngs)
        self.conv = ConvBNReLU(out_channels, out_channels, rngs=rngs)

    def __call__(self, x, size: int, train: bool):
        """Up-sample `x` (B, h, w, C) to (B, size, size, out_channels) (see `resize`)."""
        return self.conv(resize(self.up(x, train), size), train)


def resize(x, size: int):
    """Bilinear resize of (B, h, w, C) features to (B, size, size, C); identity when already that size.

    Aligns the up-sampling path (×2 per layer) with odd-sized skips, e.g. 24 → 25 for a
    100-pixel image whose pooled sizes are 50, 25, 12, 6.
    """
    if x.shape[1:3] == (size, size):
        return x
    return jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "bilinear")


def max_pool(x):
    """2×2 max pooling with stride 2 (odd sizes round down: 25 → 12)."""
    return nnx.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")


def pyramid(size: int, levels: int = 4) -> tuple[int, ...]:
    """Feature sizes of an image of `size` pixels under `levels` 2×2 poolings: 100 → (100, 50, 25, 12, 6)."""
    sizes = [size]
    for _ in range(levels):
        sizes.append(sizes[-1] // 2)
    if sizes[-1] < 1:
        raise ValueError(f"image size {size} is too small for {levels} poolings (needs ≥ {2**levels})")
    return tuple(sizes)


def signal_image(signals):
    """(B, L, S, K) ln amplitudes → (B, S, K, L): source × detector image with one channel per wavelength."""
    if signals.ndim != 4:
        raise ValueError(f"signals must be (batch, wavelength, source, detector), got shape {signals.shape}")
    return jnp.transpose(jnp.asarray(signals, jnp.float32), (0, 2, 3, 1))  # the parameters' dtype


def mri_image(mri):
    """(B, H, W) MRI → (B, H, W, 1)."""
    if mri.ndim != 3 or mri.shape[1] != mri.shape[2]:
        raise ValueError(f"mri must be (batch, H, H), got shape {mri.shape}")
    return jnp.asarray(mri, jnp.float32)[..., None]


def output_image(x):
    """(B, H, W, C) features → (B, C, H, W), the images' channel-first convention."""
    return jnp.transpose(x, (0, 3, 1, 2))


def pad_image(x, margin: int):
    """(B, H, W, C) → (B, H + 2m, W + 2m, C) with zeros around (m = `margin`)."""
    if margin == 0:
        return x
    return jnp.pad(x, ((0, 0), (margin, margin), (margin, margin), (0, 0)))


def crop_image(x, margin: int):
    """Inverse of `pad_image` on (B, C, H, W) outputs."""
    if margin == 0:
        return x
    return x[:, :, margin:-margin, margin:-margin]
