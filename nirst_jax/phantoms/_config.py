"""Configuration of random phantom distributions and their MRI images."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .._config_dict import config_from_dict
from ._decoupling import Decoupling
from ._tissue import Range, TissueTable, _check_range


@dataclass(frozen=True)
class MRIConfig:
    """How the MRI image of a phantom is drawn.

    Attributes:
        background_grey: grey level of the background tissue.
        inclusion_grey: grey level of inclusions.
        noise: Gaussian noise, standard deviation relative to the local grey level.
        mismatch_mm: robustness studies: each inclusion on the MRI has its radius changed by
            up to ±`mismatch_mm` and its centre moved by up to `mismatch_mm` (uniformly),
            independently of the optical truth. 0: the MRI shows the optical shapes.
    """

    background_grey: float = 50.0
    inclusion_grey: float = 80.0
    noise: float = 0.04
    mismatch_mm: float = 0.0

    def __post_init__(self):
        for name in ("background_grey", "inclusion_grey", "noise", "mismatch_mm"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"MRI {name} must be finite and ≥ 0, got {value!r}")
            object.__setattr__(self, name, float(value))


@dataclass(frozen=True)
class PhantomConfig:
    """A distribution of disk phantoms with one or two circular inclusions (docs/data.md).

    Attributes:
        radius_mm: disk radius.
        single_diameters_mm: diameters of a single inclusion, drawn with equal probability.
        pair_diameter_mm: diameter of each of two inclusions.
        pair_gap_mm: edge-to-edge distance range of two inclusions (drawn uniformly).
        two_inclusion_probability: probability of two inclusions instead of one.
        margin_mm: smallest distance between an inclusion and the rim.
        tissue: background and inclusion value ranges.
        scatter_amplitude: range of a in µs' = a (λ/1000 nm)^(−b), mm⁻¹ (equal ends: fixed).
        scatter_power: range of b.
        mri: the MRI image settings.
        decoupling: where MRI and optics disagree (`Decoupling`; default: never, the study).
    """

    radius_mm: float = 41.0
    single_diameters_mm: tuple[float, ...] = (12.0, 16.0, 20.0)
    pair_diameter_mm: float = 16.0
    pair_gap_mm: Range = (4.0, 42.0)
    two_inclusion_probability: float = 0.5
    margin_mm: float = 2.0
    tissue: TissueTable = field(default_factory=TissueTable.from_priors)
    scatter_amplitude: Range = (1.0, 1.0)
    scatter_power: Range = (1.0, 1.0)
    mri: MRIConfig = field(default_factory=MRIConfig)
    decoupling: Decoupling = field(default_factory=Decoupling)

    def __post_init__(self):
        for name in ("radius_mm", "pair_diameter_mm"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and positive, got {value!r}")
        if not (np.isfinite(self.margin_mm) and self.margin_mm >= 0):
            raise ValueError(f"margin_mm must be finite and ≥ 0, got {self.margin_mm!r}")
        if not 0 <= self.two_inclusion_probability <= 1:
            raise ValueError(f"two_inclusion_probability must be in [0, 1], got {self.two_inclusion_probability!r}")
        diameters = tuple(float(d) for d in np.atleast_1d(self.single_diameters_mm))
        if not diameters or not all(np.isfinite(d) and d > 0 for d in diameters):
            raise ValueError(f"single_diameters_mm must be positive numbers, got {self.single_diameters_mm!r}")
        object.__setattr__(self, "single_diameters_mm", diameters)
        object.__setattr__(self, "pair_gap_mm", _check_range("pair_gap_mm", self.pair_gap_mm))
        object.__setattr__(self, "scatter_amplitude", _check_range("scatter_amplitude", self.scatter_amplitude))
        object.__setattr__(self, "scatter_power", _check_range("scatter_power", self.scatter_power, -np.inf))
        if self.scatter_amplitude[0] <= 0:
            raise ValueError(f"scatter_amplitude must be positive, got {self.scatter_amplitude}")
        smallest = min(diameters + ((self.pair_diameter_mm,) if self.two_inclusion_probability > 0 else ()))
        if self.mri.mismatch_mm >= smallest / 2:
            raise ValueError(
                f"MRI mismatch_mm {self.mri.mismatch_mm:g} must be below the smallest inclusion radius "
                f"{smallest / 2:g} mm"
            )
        room = self.radius_mm - self.margin_mm
        if self.two_inclusion_probability < 1 and max(diameters) / 2 > room:
            raise ValueError(
                f"a {max(diameters):g} mm inclusion cannot fit {self.margin_mm:g} mm inside a disk of "
                f"radius {self.radius_mm:g} mm"
            )
        from ._decoupling import GLANDULAR_EXTENT

        if self.decoupling.glandular > 0 and self.decoupling.glandular_radius_mm[1] * GLANDULAR_EXTENT > room:
            raise ValueError(
                f"a fibroglandular region of mean radius {self.decoupling.glandular_radius_mm[1]:g} mm (lobes up to "
                f"×{GLANDULAR_EXTENT:g}) cannot fit {self.margin_mm:g} mm inside a disk of radius {self.radius_mm:g} mm"
            )
        span = 2 * self.pair_diameter_mm + self.pair_gap_mm[1]
        if self.two_inclusion_probability > 0 and span > 2 * room:
            raise ValueError(
                f"two {self.pair_diameter_mm:g} mm inclusions {self.pair_gap_mm[1]:g} mm apart span "
                f"{span:g} mm and cannot fit {self.margin_mm:g} mm inside a disk of diameter "
                f"{2 * self.radius_mm:g} mm"
            )

    @property
    def reference_scatter(self) -> tuple[float, float]:
        """(a mm⁻¹, b) of the set-up: the middle of the scattering ranges (the value when fixed).
        Sources are placed, and the homogeneous reference simulated, with it."""
        return float(np.mean(self.scatter_amplitude)), float(np.mean(self.scatter_power))

    def known_scatter(self, what: str) -> tuple[float, float]:
        """The fixed scattering law, for `what` that needs it known; ValueError if it varies per phantom."""
        a, b = self.scatter_amplitude, self.scatter_power
        if a[0] != a[1] or b[0] != b[1]:
            raise ValueError(
                f"{what} needs a known scattering law, but the phantoms draw a in {list(a)} mm⁻¹ and b in {list(b)} "
                "per phantom; give the law explicitly (scatter=(a, b))"
            )
        return float(a[0]), float(b[0])

    @property
    def max_inclusions(self) -> int:
        return 2 if self.two_inclusion_probability > 0 else 1

    def to_dict(self) -> dict:
        """A JSON-ready description (inverse: `PhantomConfig.from_dict`). `decoupling` is left
        out when all its options are off, so the study's configs describe themselves as before
        the option existed (and stores made then still resume)."""
        data = asdict(self)
        if not self.decoupling.active:
            del data["decoupling"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PhantomConfig":
        """Rebuild from `to_dict` output; unknown keys are an error."""
        nested = {
            "tissue": lambda d: TissueTable(**d),
            "mri": lambda d: MRIConfig(**d),
            "decoupling": lambda d: Decoupling(**d),
        }
        return config_from_dict(cls, data, "phantom config", nested)

    def replace(self, **changes) -> "PhantomConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


REALISTIC = Decoupling(lesion_free=0.1, silent=0.15, hidden=0.05, benign=0.3, glandular=0.6)
"""The `realistic` distribution's disagreements between MRI and optics (docs/data.md)."""

CONFIGS = {
    "paper": PhantomConfig,
    "single": lambda: PhantomConfig(two_inclusion_probability=0.0),
    "mismatch": lambda: PhantomConfig(mri=MRIConfig(mismatch_mm=2.0)),
    "realistic": lambda: PhantomConfig(mri=MRIConfig(mismatch_mm=1.0), decoupling=REALISTIC),
}
"""Named phantom distributions: `paper` (the reference study's, docs/data.md), `single` (one inclusion only),
`mismatch` (the paper's distribution with MRI/optical shape mismatch up to 2 mm) and
`realistic` (MRI and optics disagree as in real breasts: `REALISTIC`, 1 mm shape mismatch)."""


def phantom_config(name: str) -> PhantomConfig:
    """The named phantom configuration (see `CONFIGS`)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown phantom config {name!r}; choose from {sorted(CONFIGS)}")
    return CONFIGS[name]()
