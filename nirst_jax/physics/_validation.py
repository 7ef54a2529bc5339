"""Input checks shared by the physics entry points (skipped for traced values)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(value) -> bool:
    """True unless `value` is being traced by a JAX transformation."""
    return not isinstance(value, jax.core.Tracer)


def check_array(name: str, values, shape: tuple[int, ...], *, minimum: float | None = 0.0, strict: bool = False):
    """Check a shape, and, for concrete values, finiteness and a lower bound.

    Arguments:
        name: what the array is, for the message (e.g. "mua").
        values: the array (or something convertible).
        shape: the required shape.
        minimum: lower bound (None: none).
        strict: the bound is exclusive.

    Returns:
        `values` as a JAX array.
    """
    array = jnp.asarray(values)
    if array.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {array.shape}")
    if is_concrete(array):
        host = np.asarray(array)
        bad = ~np.isfinite(host)
        if minimum is not None:
            bad |= (host <= minimum) if strict else (host < minimum)
        if bad.any():
            where = np.unravel_index(int(np.flatnonzero(bad)[0]), host.shape)
            rule = "finite" if minimum is None else f"finite and {'>' if strict else '≥'} {minimum:g}"
            raise ValueError(f"{name} must be {rule}; entry {tuple(int(i) for i in where)} is {host[where].item()!r}")
    return array
