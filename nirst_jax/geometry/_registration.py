"""The rigid registration that puts an MRI slice onto the mesh."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..mesh import ImageSlice


@dataclass(frozen=True)
class RigidRegistration:
    """A rigid motion of the MRI onto the mesh: rotated by `rotation_deg` (counter-clockwise)
    about `center_mm`, then shifted by `shift_mm`. The MRI's own affine (NIfTI, DICOM, or a
    stated extent) places it in scanner coordinates first; this moves it from there.

    Attributes:
        shift_mm: (dx, dy) in mm.
        rotation_deg: rotation in degrees, counter-clockwise.
        center_mm: (x, y) of the rotation's centre, mm.
    """

    shift_mm: tuple[float, float] = (0.0, 0.0)
    rotation_deg: float = 0.0
    center_mm: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        for name in ("shift_mm", "center_mm"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != (2,) or not np.isfinite(value).all():
                raise ValueError(f"{name} must be a finite (x, y) pair in mm, got {getattr(self, name)!r}")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        if isinstance(self.rotation_deg, bool) or not np.isfinite(self.rotation_deg):
            raise ValueError(f"rotation_deg must be a finite number of degrees, got {self.rotation_deg!r}")
        object.__setattr__(self, "rotation_deg", float(self.rotation_deg))

    @property
    def is_identity(self) -> bool:
        """No motion (any centre): the MRI stays where its affine puts it."""
        return self.shift_mm == (0.0, 0.0) and self.rotation_deg % 360.0 == 0.0

    def apply(self, image: ImageSlice) -> ImageSlice:
        """`image` moved onto the mesh (`ImageSlice.registered`)."""
        if not isinstance(image, ImageSlice):
            raise TypeError(f"a registration moves an ImageSlice, got {type(image).__name__}")
        return image.registered(shift_mm=self.shift_mm, rotation_deg=self.rotation_deg, center_mm=self.center_mm)

    def to_dict(self) -> dict:
        """A JSON-ready description (inverse: `RigidRegistration.from_dict`)."""
        return {"shift_mm": list(self.shift_mm), "rotation_deg": self.rotation_deg, "center_mm": list(self.center_mm)}

    @classmethod
    def from_dict(cls, data: dict) -> "RigidRegistration":
        """Rebuild from `to_dict` output; unknown keys are an error."""
        unknown = set(data) - {"shift_mm", "rotation_deg", "center_mm"}
        if unknown:
            raise ValueError(f"unknown registration keys {sorted(unknown)}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})
