"""Network inputs: MRI normalisation and masking of absent fibres' measurements."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..physics import MeasurementLayout


def normalise_mri(mri, mask):
    """MRI grey levels relative to their mean inside the disk, minus one; 0 outside.

    Makes the input independent of the scanner's arbitrary grey scale: a background of 50
    and an inclusion of 80 become ≈ 0 and ≈ 0.6 whatever the absolute values.

    Arguments:
        mri: (..., H, W) grey levels.
        mask: (H, W) bool, pixels inside the disk.

    Returns:
        (..., H, W) float32.
    """
    mri = jnp.asarray(mri, jnp.float32)
    mask = jnp.asarray(mask)
    if mri.shape[-2:] != mask.shape:
        raise ValueError(f"MRI of shape {mri.shape} does not match the image mask {mask.shape}")
    mean = jnp.sum(jnp.where(mask, mri, 0), (-2, -1), keepdims=True) / jnp.sum(mask)
    return jnp.where(mask, mri / jnp.where(mean > 0, mean, 1) - 1, 0)


def evenly_spaced_fibres(n_fibres: int, active: int) -> np.ndarray:
    """Indices of `active` of `n_fibres` rim fibres spread evenly (8 of 16: every other fibre)."""
    if not 2 <= active <= n_fibres:
        raise ValueError(f"active fibres must be in [2, {n_fibres}], got {active}")
    return np.unique(np.floor(np.arange(active) * n_fibres / active).astype(int))


def fibre_mask(n_fibres: int, active: int | None) -> np.ndarray:
    """(S, K) bool: measurements whose source and detector fibres are both active.

    Arguments:
        n_fibres: fibres on the rim (S = n_fibres, K = n_fibres − 1).
        active: how many fibres are in use (evenly spaced), or None for all.
    """
    fibres = None if active is None else evenly_spaced_fibres(n_fibres, active)
    return np.asarray(MeasurementLayout.ring(n_fibres, fibres).active)


def mask_signals(signals, mask):
    """Zero (the training mean, after normalisation) the measurements of absent fibres.

    Arguments:
        signals: (..., L, S, K) normalised ln A.
        mask: (S, K) bool from `fibre_mask`, or per phantom (B, 1, S, K) (`random_fibre_masks`).
    """
    return jnp.where(jnp.asarray(mask), signals, 0)


def random_fibre_masks(key, batch: int, n_fibres: int, rate: float) -> jnp.ndarray:
    """Fibre dropout: (batch, S, K) measurement masks with random fibres absent.

    Each phantom, with probability `rate`, loses fibres: it keeps k of the n fibres, k uniform
    in [⌈n/4⌉, n − 1], chosen uniformly at random (so evenly spaced subsets such as 8 of 16 are
    among the patterns seen); otherwise it keeps all. Traceable (use inside `jit`).

    Arguments:
        key: `jax.random` key.
        batch: phantoms B.
        n_fibres: fibres on the rim (S = n, K = n − 1).
        rate: probability that a phantom loses fibres, in [0, 1].

    Returns:
        (B, S, K) bool: measurements whose source and detector fibres are both kept.
    """
    k_drop, k_count, k_order = jax.random.split(key, 3)
    low = -(-n_fibres // 4)
    dropped = jax.random.bernoulli(k_drop, rate, (batch,))
    kept = jax.random.randint(k_count, (batch,), low, n_fibres)
    kept = jnp.where(dropped, kept, n_fibres)
    rank = jnp.argsort(jnp.argsort(jax.random.uniform(k_order, (batch, n_fibres)), axis=1), axis=1)
    fibres = rank < kept[:, None]  # (B, n): the `kept` fibres of lowest random rank
    detectors = jnp.asarray(MeasurementLayout.ring(n_fibres).detector_index)
    return fibres[:, :, None] & fibres[:, detectors]
