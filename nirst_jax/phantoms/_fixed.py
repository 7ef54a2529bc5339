"""Fixed test phantoms: the study's three-inclusion case, malignant- and benign-like lesions,
and a breast-like phantom with adipose and fibroglandular tissue and an irregular lesion.

Values come from the centres of `breast_tissue_priors.csv` (docs/data.md); HbT contrasts of the
malignant- and benign-like lesions are 1.5 and 1.0 (the study measured 1.47 and 1.05).
"""

from __future__ import annotations

from ._phantom import Phantom, Region
from ._shapes import Circle, StarShape


def _tissue(hbt: float, sto2_percent: float, water: float) -> tuple[float, float, float]:
    """HbO, Hb (µM), water (%) from HbT (µM), StO2 (%) and water (%)."""
    return (hbt * sto2_percent / 100, hbt * (1 - sto2_percent / 100), water)


BACKGROUND_HBT, BACKGROUND_STO2, BACKGROUND_WATER = 20.0, 72.0, 40.0
"""Background of the lesion phantoms: between the adipose and fibroglandular centres."""


def three_inclusions() -> Phantom:
    """Three circular inclusions of different sizes and contrasts (style of the study's Fig. S3)."""
    hbt, sto2, water = BACKGROUND_HBT, BACKGROUND_STO2, BACKGROUND_WATER
    return Phantom(
        background=_tissue(hbt, sto2, water),
        regions=(
            Region(Circle((-16.0, 10.0), 10.0), _tissue(1.5 * hbt, 65.0, 1.2 * water), 80.0, "inclusion 1"),
            Region(Circle((14.0, 15.0), 8.0), _tissue(2.0 * hbt, 60.0, 1.0 * water), 80.0, "inclusion 2"),
            Region(Circle((4.0, -18.0), 6.0), _tissue(1.3 * hbt, 75.0, 1.4 * water), 80.0, "inclusion 3"),
        ),
        name="three-inclusions",
    )


def _lesion_phantom(name: str, hbt_contrast: float, sto2: float, water_contrast: float) -> Phantom:
    hbt, water = BACKGROUND_HBT, BACKGROUND_WATER
    lesion = _tissue(hbt_contrast * hbt, sto2, water_contrast * water)
    return Phantom(
        background=_tissue(hbt, BACKGROUND_STO2, water),
        regions=(Region(Circle((12.0, -8.0), 8.0), lesion, 80.0, "lesion"),),
        name=name,
    )


def malignant_lesion() -> Phantom:
    """A 16 mm lesion with HbT contrast 1.5, lower StO2 (65 %) and water contrast 1.2."""
    return _lesion_phantom("malignant", 1.5, 65.0, 1.2)


def benign_lesion() -> Phantom:
    """A 16 mm lesion with HbT contrast 1.0, background StO2 and water contrast 1.1."""
    return _lesion_phantom("benign", 1.0, 72.0, 1.1)


def breast() -> Phantom:
    """Adipose background, an irregular fibroglandular region and a spiculated lesion inside it."""
    adipose = _tissue(17.0, 72.0, 28.0)
    fibroglandular = _tissue(24.0, 72.0, 55.0)
    lesion = _tissue(1.6 * 24.0, 65.0, 1.2 * 55.0)
    return Phantom(
        background=adipose,
        regions=(
            Region(
                StarShape((3.0, 4.0), 22.0, ((3, 0.15, 0.3), (5, 0.08, 1.0))),
                fibroglandular,
                65.0,
                "fibroglandular",
            ),
            Region(StarShape((10.0, -6.0), 7.0, ((4, 0.18, 0.0), (7, 0.1, 0.5))), lesion, 85.0, "lesion"),
        ),
        name="breast",
    )


FIXED_PHANTOMS = {
    "three-inclusions": three_inclusions,
    "malignant": malignant_lesion,
    "benign": benign_lesion,
    "breast": breast,
}
"""Name → factory of each fixed test phantom."""


def fixed_phantom(name: str) -> Phantom:
    """The named fixed phantom (see `FIXED_PHANTOMS`)."""
    if name not in FIXED_PHANTOMS:
        raise ValueError(f"unknown fixed phantom {name!r}; choose from {sorted(FIXED_PHANTOMS)}")
    return FIXED_PHANTOMS[name]()
