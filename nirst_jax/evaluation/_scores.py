"""Per-phantom metrics of several methods on the same phantoms: tables, CSV."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np

from .._atomic import atomic_path
from ._metrics import image_metrics

CHROMOPHORE_LABELS = ("HbO (µM)", "Hb (µM)", "water (%)")
METRICS = ("mse", "psnr", "ssim")
METRIC_LABELS = {"mse": "MSE", "psnr": "PSNR (dB)", "ssim": "SSIM"}


@dataclass(frozen=True)
class Scores:
    """MSE, PSNR and SSIM per phantom, chromophore and method.

    Attributes:
        phantoms: (B,) phantom ids (e.g. dataset indices).
        values: method → metric ("mse", "psnr", "ssim") → (B, 3) values (HbO, Hb, water).
    """

    phantoms: np.ndarray
    values: dict[str, dict[str, np.ndarray]]

    @classmethod
    def compute(cls, images: dict, truth, mask, phantoms=None) -> "Scores":
        """Score each method's (B, 3, H, W) images against the (B, 3, H, W) truth inside `mask`."""
        truth = np.asarray(truth, float)
        phantoms = np.arange(len(truth)) if phantoms is None else np.asarray(phantoms)
        values = {}
        for name, predicted in images.items():
            predicted = np.asarray(predicted, float)
            if predicted.shape != truth.shape:
                raise ValueError(f"{name}: images of shape {predicted.shape} do not match the truth {truth.shape}")
            values[name] = {k: np.asarray(v) for k, v in image_metrics(predicted, truth, mask).items()}
        return cls(phantoms, values)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.values)

    def mean(self, method: str, metric: str) -> np.ndarray:
        """(3,) mean over phantoms per chromophore."""
        return self.values[method][metric].mean(0)

    def difference(self, method: str, baseline: str, metric: str = "psnr") -> tuple[np.ndarray, np.ndarray]:
        """`method` minus `baseline`, paired by phantom.

        Returns:
            (3,) mean difference per chromophore and (3,) its standard error (the differences'
            sample standard deviation over √B; NaN for one phantom).
        """
        differences = self.values[method][metric] - self.values[baseline][metric]
        count = len(differences)
        error = differences.std(0, ddof=1) / np.sqrt(count) if count > 1 else np.full(3, np.nan)
        return differences.mean(0), error

    def table(self) -> str:
        """Markdown: mean ± std per method and chromophore (rows) and metric (columns)."""
        lines = ["| method | chromophore | " + " | ".join(METRIC_LABELS[m] for m in METRICS) + " |",
                 "|---|---|" + "---|" * len(METRICS)]
        digits = {"mse": 3, "psnr": 1, "ssim": 3}
        for method in self.methods:
            for c, label in enumerate(CHROMOPHORE_LABELS):
                cells = []
                for m in METRICS:
                    v = self.values[method][m][:, c]
                    cells.append(f"{v.mean():.{digits[m]}f} ± {v.std():.{digits[m]}f}")
                lines.append(f"| {method} | {label} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def best_method(self, metric: str = "psnr") -> list[str]:
        """Per chromophore, the method with the best mean (highest PSNR/SSIM, lowest MSE)."""
        means = np.stack([self.mean(m, metric) for m in self.methods])
        pick = means.argmin(0) if metric == "mse" else means.argmax(0)
        return [self.methods[i] for i in pick]

    def write_csv(self, path) -> None:
        """One row per phantom, method and chromophore: phantom, method, chromophore, MSE, PSNR, SSIM."""
        with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["phantom", "method", "chromophore", *METRICS])
            for method in self.methods:
                for i, phantom in enumerate(self.phantoms):
                    for c, label in enumerate(("HbO", "Hb", "water")):
                        writer.writerow([int(phantom), method, label, *(f"{self.values[method][m][i, c]:.6g}" for m in METRICS)])

    @classmethod
    def read_csv(cls, path) -> "Scores":
        """Inverse of `write_csv`."""
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or set(rows[0]) != {"phantom", "method", "chromophore", *METRICS}:
            raise ValueError(f"{path} is not a scores CSV written by Scores.write_csv")
        methods = list(dict.fromkeys(r["method"] for r in rows))
        phantoms = np.array(list(dict.fromkeys(int(r["phantom"]) for r in rows)))
        order = {p: i for i, p in enumerate(phantoms)}
        chromophore = {"HbO": 0, "Hb": 1, "water": 2}
        values = {m: {k: np.full((len(phantoms), 3), np.nan) for k in METRICS} for m in methods}
        for r in rows:
            for k in METRICS:
                values[r["method"]][k][order[int(r["phantom"])], chromophore[r["chromophore"]]] = float(r[k])
        return cls(phantoms, values)
