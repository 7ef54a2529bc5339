"""Fixed-size batches for compiled functions (one compilation for every batch)."""

from __future__ import annotations

import numpy as np


def padded_batches(arrays, batch_size: int, pad_single: bool = False):
    """Split arrays along axis 0 into batches of `batch_size`.

    A short last batch is padded by repeating its last row, unless everything fits in one
    batch and not `pad_single` (then it is left short: one compilation either way).

    Arguments:
        arrays: sequence of arrays with the same leading length.
        batch_size: rows per batch.
        pad_single: pad a lone short batch too (reuses the compilation of full batches).

    Yields:
        (rows that are real, list of batch arrays).
    """
    total = len(arrays[0])
    for start in range(0, total, batch_size):
        chunk = [np.asarray(a[start : start + batch_size]) for a in arrays]
        n = len(chunk[0])
        if n < batch_size and (total > batch_size or pad_single):
            chunk = [np.concatenate([c, np.repeat(c[-1:], batch_size - n, 0)]) for c in chunk]
        yield n, chunk
