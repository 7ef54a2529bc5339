"""The deterministic train/validation/test split of a dataset."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.7, 0.2, 0.1)


def split_labels(count: int, seed: int, fractions=SPLIT_FRACTIONS) -> np.ndarray:
    """(count,) int8 labels (0 train, 1 validation, 2 test) from a seeded permutation.

    Arguments:
        count: number of phantoms.
        seed: dataset seed.
        fractions: train/validation/test fractions (sum 1); sizes are rounded, test takes the rest.

    Returns:
        The labels: round(0.7·count) train, round(0.2·count) validation, the rest test.
    """
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1):
        raise ValueError(f"split fractions must be 3 non-negative numbers summing to 1, got {fractions!r}")
    n_train = int(round(fractions[0] * count))
    n_validation = min(int(round(fractions[1] * count)), count - n_train)
    order = np.random.default_rng([int(seed), 0x5D11]).permutation(count)
    labels = np.full(count, 2, np.int8)
    labels[order[:n_train]] = 0
    labels[order[n_train : n_train + n_validation]] = 1
    return labels


def split_index(name: str) -> int:
    """0, 1, 2 for "train", "validation", "test"."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; choose from {SPLITS}")
    return SPLITS.index(name)
