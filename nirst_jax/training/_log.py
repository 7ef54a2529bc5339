"""The run's metrics log (JSON lines, one per epoch) and its loss-curve figure."""

from __future__ import annotations

import json
from pathlib import Path

from .._atomic import atomic_path, save_figure


def read_log(path) -> list[dict]:
    """Records of a metrics.jsonl file ([] if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_log(path, records: list[dict]) -> None:
    """Rewrite the whole log atomically (it is small: one line per epoch)."""
    with atomic_path(path) as temporary:
        temporary.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def loss_figure(records: list[dict]):
    """Training and validation loss per epoch (log scale), physics term dashed when present."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    epochs = [r["epoch"] + 1 for r in records]
    for key, label, style in (
        ("train_data", "train MSE", "-"),
        ("val_data", "validation MSE", "-"),
        ("train_physics", "train physics", "--"),
        ("val_physics", "validation physics", "--"),
    ):
        values = [r.get(key) for r in records]
        if any(v is not None and v > 0 for v in values):
            axis.plot(epochs, values, style, label=label)
    axis.set_yscale("log")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss (normalised units)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def save_loss_figure(path, records: list[dict]) -> None:
    """Write `loss_figure(records)` as PNG."""
    save_figure(loss_figure(records), path)
