"""Independent random streams: one `fold_in` per purpose.

`jax.random.split` is not a way to separate purposes across call sites: with the partitionable
threefry PRNG `split(k, 2)[i] == split(k, 3)[i]`, so two places that split the same key into
different counts share streams (this once gave fixed test phantom k the MRI noise of training
phantom k). Every place that derives a key for a purpose goes through `purpose_key`, whose tag
is a stable hash of the purpose's name: different purposes never share a stream.
"""

from __future__ import annotations

import zlib

import jax
import numpy as np

# Bumped whenever a key derivation changes (recorded in dataset manifests: it changes their bytes).
RANDOM_STREAMS_VERSION = 2


def purpose_tag(purpose: str) -> np.uint32:
    """The 32-bit tag folded in for `purpose` (CRC-32 of its name: stable across runs)."""
    if not isinstance(purpose, str) or not purpose:
        raise ValueError(f"purpose must be a non-empty string, got {purpose!r}")
    return np.uint32(zlib.crc32(purpose.encode()))


def purpose_key(key, purpose: str):
    """The stream of `key` reserved for `purpose`.

    Arguments:
        key: a `jax.random` key (traceable).
        purpose: what the stream is for, e.g. "mri-noise".

    Returns:
        A key independent of `key`'s streams for any other purpose and of its `split` children.
    """
    return jax.random.fold_in(key, purpose_tag(purpose))


def seed_key(seed: int, purpose: str):
    """`purpose_key(jax.random.key(seed), purpose)`: the root of one purpose's stream for a seed."""
    return purpose_key(jax.random.key(int(seed)), purpose)
