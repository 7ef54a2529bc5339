"""Tissue value ranges for random phantoms, built from `breast_tissue_priors.csv`.

Background and inclusion values are drawn uniformly and independently from the ranges below
(see docs/data.md for the sources of each range):

- background: total haemoglobin HbT (µM), oxygen saturation StO2 (%) and water (%), each
  spanning the adipose *and* fibroglandular rows of the priors table (low to high);
- inclusion: HbT as a contrast (ratio) to the phantom's background HbT, StO2 (%), and water as
  a contrast to the background water, each spanning the malignant *and* benign rows; water is
  drawn in [bg·low, min(bg·high, 100 %)] so it never exceeds 100 %.

HbO = HbT·StO2 and Hb = HbT·(1 − StO2).
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

Range = tuple[float, float]


def _check_range(name: str, value, minimum: float = 0.0, maximum: float = np.inf) -> Range:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}") from None
    if not (np.isfinite(low) and np.isfinite(high)) or low > high:
        raise ValueError(f"{name} must be finite with low ≤ high, got {value!r}")
    if low < minimum or high > maximum:
        raise ValueError(f"{name} must lie within [{minimum:g}, {maximum:g}], got {value!r}")
    return (low, high)


def read_priors() -> list[dict[str, str]]:
    """Rows of the packaged `breast_tissue_priors.csv` (tissue, quantity, unit, low, centre, high, basis)."""
    path = resources.files("nirst_jax.data") / "spectra" / "breast_tissue_priors.csv"
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _span(rows, tissues, quantity) -> Range:
    picked = [r for r in rows if r["tissue"] in tissues and r["quantity"] == quantity]
    if len(picked) != len(tissues):
        raise ValueError(f"breast_tissue_priors.csv lacks {quantity} for one of {tissues}")
    return (min(float(r["suggested_low"]) for r in picked), max(float(r["suggested_high"]) for r in picked))


@dataclass(frozen=True)
class TissueTable:
    """Uniform ranges of background and inclusion values.

    Attributes:
        background_hbt: background HbT range (µM).
        background_sto2: background StO2 range (%).
        background_water: background water range (%).
        lesion_hbt_contrast: inclusion/background HbT ratio range.
        lesion_sto2: inclusion StO2 range (%).
        lesion_water_contrast: inclusion/background water ratio range.
    """

    background_hbt: Range = (10.0, 35.0)
    background_sto2: Range = (60.0, 85.0)
    background_water: Range = (15.0, 75.0)
    lesion_hbt_contrast: Range = (0.8, 3.0)
    lesion_sto2: Range = (50.0, 85.0)
    lesion_water_contrast: Range = (0.9, 1.6)

    def __post_init__(self):
        limits = {"background_sto2": 100.0, "lesion_sto2": 100.0, "background_water": 100.0}
        for name, value in asdict(self).items():
            object.__setattr__(self, name, _check_range(name, value, 0.0, limits.get(name, np.inf)))
        if self.background_hbt[0] <= 0:
            raise ValueError(f"background_hbt must be positive, got {self.background_hbt}")

    @classmethod
    def from_priors(cls) -> "TissueTable":
        """The table spanned by the adipose/fibroglandular and malignant/benign rows of the priors."""
        rows = read_priors()
        background, lesion = ("adipose", "fibroglandular"), ("malignant_lesion", "benign_lesion")
        return cls(
            background_hbt=_span(rows, background, "HbT"),
            background_sto2=_span(rows, background, "StO2"),
            background_water=_span(rows, background, "water"),
            lesion_hbt_contrast=_span(rows, lesion, "HbT_contrast_vs_local_background"),
            lesion_sto2=_span(rows, lesion, "StO2"),
            lesion_water_contrast=_span(rows, lesion, "water_contrast_vs_background"),
        )

    def nominal_background(self) -> np.ndarray:
        """(3,) HbO (µM), Hb (µM), water (%) at the centre of the background ranges."""
        hbt, sto2, water = (float(np.mean(r)) for r in (self.background_hbt, self.background_sto2, self.background_water))
        return np.array([hbt * sto2 / 100, hbt * (1 - sto2 / 100), water])

    def sample_background(self, key) -> jnp.ndarray:
        """(3,) HbO, Hb, water of one background (JAX, traceable)."""
        hbt, sto2, water = _uniform(key, (self.background_hbt, self.background_sto2, self.background_water))
        return jnp.stack([hbt * sto2 / 100, hbt * (1 - sto2 / 100), water])

    def sample_lesion(self, key, background) -> jnp.ndarray:
        """(3,) HbO, Hb, water of one inclusion in `background` (3,) (JAX, traceable)."""
        contrast, sto2, u = _uniform(key, (self.lesion_hbt_contrast, self.lesion_sto2, (0.0, 1.0)))
        hbt = contrast * (background[0] + background[1])
        low = background[2] * self.lesion_water_contrast[0]
        high = jnp.minimum(background[2] * self.lesion_water_contrast[1], jnp.float32(100.0))
        water = low + u * jnp.maximum(high - low, 0.0)
        return jnp.stack([hbt * sto2 / 100, hbt * (1 - sto2 / 100), water])


def _uniform(key, ranges):
    u = jax.random.uniform(key, (len(ranges),), jnp.float32)
    return [lo + (hi - lo) * u[i] for i, (lo, hi) in enumerate(ranges)]
