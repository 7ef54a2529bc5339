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


def loss_figure(records: list[dict], data_loss: str = "mse"):
    """Training and validation loss per epoch (log scale), physics term dashed when present.

    Arguments:
        records: the log's records.
        data_loss: the run's supervised loss; a "log-mse" run's data terms (means of log MSE)
            are drawn as exp(·), the geometric mean of the images' MSE.
    """
    import math

    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    epochs = [r["epoch"] + 1 for r in records]
    data = "geometric-mean MSE" if data_loss == "log-mse" else "MSE"
    for key, label, style in (
        ("train_data", f"train {data}", "-"),
        ("val_data", f"validation {data}", "-"),
        ("train_physics", "train physics", "--"),
        ("val_physics", "validation physics", "--"),
    ):
        values = [r.get(key) for r in records]
        if data_loss == "log-mse" and key.endswith("_data"):
            values = [None if v is None else math.exp(v) for v in values]
        values = [v if v is not None and v > 0 else math.nan for v in values]  # e.g. epochs before the physics joined
        if any(v > 0 for v in values):
            axis.plot(epochs, values, style, label=label)
    axis.set_yscale("log")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss (normalised units)")
    if axis.get_lines():
        axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def save_loss_figure(path, records: list[dict], data_loss: str = "mse") -> None:
    """Write `loss_figure(records, data_loss)` as PNG."""
    save_figure(loss_figure(records, data_loss), path)
