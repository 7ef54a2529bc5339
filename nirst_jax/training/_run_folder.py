"""What a run folder holds besides checkpoints: its config and the normalisation it trained with."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from .._atomic import save_json, save_npz
from .._version import __version__
from ..datasets import Normalisation
from ._config import TrainConfig

CONFIG = "config.json"
INPUTS = "inputs.npz"
METRICS = "metrics.jsonl"
LOSS_FIGURE = "loss.png"


def write_run_files(run: Path, config: TrainConfig, dataset, normalisation: Normalisation, image_mask, signal_mask,
                    inputs: bool = True, unlabelled=None) -> None:
    """config.json (training config, dataset description and, with `unlabelled`, that store's
    folder and content SHA-256) and, with `inputs`, inputs.npz (normalisation, masks: written
    once, when the run starts, and never replaced on resume)."""
    extra = {} if unlabelled is None else {
        "unlabelled_dataset": {"folder": str(Path(unlabelled.folder).absolute()), "sha256": unlabelled.fingerprint}}
    save_json(
        run / CONFIG,
        {
            **extra,
            "train": config.to_dict(),
            "dataset": {
                "folder": str(Path(dataset.folder).absolute()),
                "sha256": dataset.fingerprint,
                "seed": dataset.manifest.get("seed"),
                "count": dataset.count,
                "config_name": dataset.manifest.get("config_name"),
                "simulation": dataset.manifest["config"],
            },
            "nirst_jax_version": __version__,
        },
    )
    if inputs:
        save_npz(run / INPUTS, image_mask=np.asarray(image_mask), signal_mask=np.asarray(signal_mask),
                 **normalisation.to_arrays())


def read_run_files(run: Path) -> tuple[dict, Normalisation, np.ndarray, np.ndarray]:
    """(config.json contents, normalisation, image mask, signal mask) of a run folder."""
    run = Path(run)
    for name in (CONFIG, INPUTS):
        if not (run / name).is_file():
            raise ValueError(f"{run} is not a training run: {name} is missing")
    try:
        meta = json.loads((run / CONFIG).read_text())
        with np.load(run / INPUTS, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the run files in {run}: {error}") from None
    image_mask = arrays.pop("image_mask").astype(bool)
    signal_mask = arrays.pop("signal_mask").astype(bool)
    normalisation = Normalisation(**{key: jnp.asarray(value, jnp.float32) for key, value in arrays.items()})
    return meta, normalisation, image_mask, signal_mask
