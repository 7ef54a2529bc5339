"""Where MRI and optics disagree: options of a phantom distribution that keep the MRI from
giving the optical answer away (docs/data.md, "The realistic distribution").

In the study's distribution every MRI-bright region is an inclusion with HbT contrast in
0.8–3.0, so a network can read the optical contrast off the MRI. Real breasts have MRI-visible
tissue of no optical contrast, fibroglandular tissue with its own values, benign lesions with
HbT contrast ≈ 1 and lesions the MRI does not show; these options add them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ._tissue import Range, _check_range

GLANDULAR_ORDERS = (2, 3, 5)
"""Harmonic orders of the fibroglandular region's rim (a lobed, irregular star shape)."""
GLANDULAR_AMPLITUDE = 0.12
"""Largest amplitude of each harmonic (uniform in [0, this]), relative to the mean radius."""
GLANDULAR_EXTENT = 1 + len(GLANDULAR_ORDERS) * GLANDULAR_AMPLITUDE
"""Largest rim distance / mean radius."""


@dataclass(frozen=True)
class Decoupling:
    """Probabilities and ranges of MRI/optics disagreement (all 0: the study's distribution).

    Attributes:
        lesion_free: probability that a phantom has no inclusion at all.
        silent: per inclusion, probability that it shows on the MRI but has no optical
            contrast (its optical values are the local background's).
        hidden: per inclusion, probability that it has optical contrast but the MRI does not
            show it (its grey level is the local tissue's).
        benign: per inclusion, probability that its HbT contrast is drawn from
            `benign_hbt_contrast` instead of `malignant_hbt_contrast`; None: from the tissue
            table's whole span (the study's way).
        benign_hbt_contrast: HbT contrast range of benign-like lesions.
        malignant_hbt_contrast: HbT contrast range of malignant-like lesions.
        glandular: probability that a phantom has an irregular fibroglandular region; its
            background is then adipose.
        glandular_radius_mm: mean radius range of that region.
        glandular_grey: its MRI grey level (between the background's and the inclusions').
        adipose_hbt, adipose_water: background ranges (µM, %) when a fibroglandular region is
            present.
        glandular_hbt, glandular_water: the region's ranges (µM, %); StO2 as the background.
    """

    lesion_free: float = 0.0
    silent: float = 0.0
    hidden: float = 0.0
    benign: float | None = None
    benign_hbt_contrast: Range = (0.8, 1.2)
    malignant_hbt_contrast: Range = (1.25, 3.0)
    glandular: float = 0.0
    glandular_radius_mm: Range = (12.0, 24.0)
    glandular_grey: float = 65.0
    adipose_hbt: Range = (10.0, 25.0)
    adipose_water: Range = (15.0, 40.0)
    glandular_hbt: Range = (15.0, 35.0)
    glandular_water: Range = (35.0, 75.0)

    def __post_init__(self):
        for name in ("lesion_free", "silent", "hidden", "glandular"):
            value = getattr(self, name)
            if not (np.isfinite(value) and 0 <= value <= 1):
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.benign is not None:
            if not (np.isfinite(self.benign) and 0 <= self.benign <= 1):
                raise ValueError(f"benign must be None or a probability in [0, 1], got {self.benign!r}")
            object.__setattr__(self, "benign", float(self.benign))
        if self.silent + self.hidden > 1:
            raise ValueError(f"silent + hidden must be ≤ 1, got {self.silent} + {self.hidden}")
        for name in ("benign_hbt_contrast", "malignant_hbt_contrast", "glandular_radius_mm", "adipose_hbt", "glandular_hbt"):
            object.__setattr__(self, name, _check_range(name, getattr(self, name)))
        for name in ("adipose_water", "glandular_water"):
            object.__setattr__(self, name, _check_range(name, getattr(self, name), 0.0, 100.0))
        if self.glandular_radius_mm[0] <= 0 or self.adipose_hbt[0] <= 0 or self.glandular_hbt[0] <= 0:
            raise ValueError("glandular_radius_mm, adipose_hbt and glandular_hbt must be positive")
        if not (np.isfinite(self.glandular_grey) and self.glandular_grey >= 0):
            raise ValueError(f"glandular_grey must be finite and ≥ 0, got {self.glandular_grey!r}")
        object.__setattr__(self, "glandular_grey", float(self.glandular_grey))

    @property
    def active(self) -> bool:
        """Whether any option departs from the study's distribution."""
        return self != Decoupling()

    def to_dict(self) -> dict:
        return asdict(self)
