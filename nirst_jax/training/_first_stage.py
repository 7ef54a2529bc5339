"""The first-stage images of a post-processing network (DRI + U-Net), computed once per phantom.

A network with a parameter-free first stage (`network.prepare(signals, mri)`, e.g. DRI) would
redo it for every phantom in every epoch. Training computes it once for the phantoms it reads
and keeps the images in the run folder, so an interrupted run resumes where it stopped and a
resumed or repeated run reuses them (while the dataset, the stage and the normalisation are the
same: `key`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from .._atomic import save_json
from .._batching import padded_batches

FIRST_STAGE = "first_stage.npy"
FIRST_STAGE_PROGRESS = "first_stage.json"


def first_stage_batch_size() -> int:
    """Phantoms per call of a first stage (DRI: a Gauss-Newton run each): 8 on CPU, 64 on accelerators."""
    return 8 if jax.default_backend() == "cpu" else 64


def first_stage_images(
    run: Path,
    dataset,
    indices,
    prepare: Callable,
    key: str,
    *,
    normalisation=None,
    batch_size: int = 8,
    progress: bool = True,
) -> np.ndarray:
    """(count, 3, H, W) first-stage images of the dataset's phantoms `indices` (other rows NaN),
    read-only, computed into RUN/first_stage.npy unless already there.

    Arguments:
        run: the run folder.
        dataset: the training `Dataset`.
        indices: phantom indices to compute.
        prepare: (signals (B, L, S, K) normalised, MRI (B, H, W) grey levels) → (B, 3, H, W)
            normalised images; called on fixed-size batches.
        key: a fingerprint of what the images depend on (`json_sha256`): stored images with
            another key are recomputed.
        normalisation: of the signals (default the dataset's).
        batch_size: phantoms per call.
        progress: show a progress bar.

    Returns:
        The images, memory-mapped.
    """
    run = Path(run)
    path, record = run / FIRST_STAGE, run / FIRST_STAGE_PROGRESS
    indices = np.unique(np.asarray(indices, np.int64))
    size = dataset.config.image_size
    shape = (dataset.count, 3, size, size)
    stored = json.loads(record.read_text()) if record.is_file() else {}
    done = 0
    if stored.get("key") == key and path.is_file() and np.array_equal(stored.get("indices"), indices.tolist()):
        done = int(stored["done"])
        images = np.lib.format.open_memmap(path, mode="r+")
        if images.shape != shape:
            done = 0
    if done == 0:
        run.mkdir(parents=True, exist_ok=True)
        record.unlink(missing_ok=True)  # a run killed while the file is rebuilt must not trust an old record
        images = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        images[:] = np.nan
    remaining = indices[done:]
    bar = tqdm(total=len(indices), initial=done, desc="first stage (DRI) of the training phantoms", unit="phantom",
               disable=not progress or not len(remaining))
    for start in range(0, len(remaining), batch_size):
        chunk = remaining[start : start + batch_size]
        signals = dataset.signals(chunk, normalisation)
        mri = dataset.read("mri", chunk)
        (n, (signals, mri)), = padded_batches((signals, mri), batch_size, pad_single=True)
        images[chunk] = np.asarray(prepare(signals, mri), np.float32)[:n]
        images.flush()
        done += len(chunk)
        # The record follows the rows it counts: a run killed before it recomputes this chunk.
        save_json(record, {"key": key, "indices": indices.tolist(), "done": done})
        bar.update(len(chunk))
    bar.close()
    finite = np.isfinite(images[indices]).all(axis=(1, 2, 3))
    if not finite.all():
        bad = indices[~finite]
        raise ValueError(f"the first stage gave NaN or infinite images for phantoms {bad[:10].tolist()}")
    del images
    return np.load(path, mmap_mode="r")
