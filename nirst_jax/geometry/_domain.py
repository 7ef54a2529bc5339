"""The imaged domain: the study's disk, or any simply connected outline (a polygon in mm).

A domain meshes itself at any spacing (so data, physics and reconstruction can each use their
own mesh of the same region), gives the image grid over it, and says where inclusions of a
random phantom may go.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..mesh import Mesh, PixelGrid, disk_mesh, fibres_on_contour, mesh_outline, polygon_mesh
from ..mesh._contour import closed_contour
from ..phantoms import DiskPlacement, RegionPlacement
from ._described import from_kind_dict


@dataclass(frozen=True)
class DiskDomain:
    """A disk centred at the origin (the reference study's: radius 41 mm).

    Attributes:
        radius_mm: the radius.
    """

    radius_mm: float = 41.0

    def __post_init__(self):
        if not (np.isfinite(self.radius_mm) and self.radius_mm > 0):
            raise ValueError(f"disk radius_mm must be finite and positive, got {self.radius_mm!r}")
        object.__setattr__(self, "radius_mm", float(self.radius_mm))

    @property
    def width_mm(self) -> float:
        """The smallest extent of the domain (its diameter)."""
        return 2 * self.radius_mm

    def mesh(self, spacing_mm: float) -> Mesh:
        """`disk_mesh` of the disk with edges ≤ `spacing_mm`."""
        return disk_mesh(self.radius_mm, spacing_mm)

    def grid(self, size: int) -> PixelGrid:
        """`size`² pixels over [−R, R]²."""
        return PixelGrid(size, -self.radius_mm, self.radius_mm)

    def placement(self) -> DiskPlacement:
        """Where inclusions go: the reference study's draws."""
        return DiskPlacement(self.radius_mm)

    def to_dict(self) -> dict:
        return {"kind": "disk", "radius_mm": self.radius_mm}


@dataclass(frozen=True)
class PolygonDomain:
    """The inside of a closed outline (a breast slice from an MRI mask, a NIRFAST mesh's
    boundary, a slab).

    Attributes:
        outline: ((x, y), ...) vertices in mm, counter-clockwise (either orientation is
            accepted and stored counter-clockwise; see `closed_contour` for what is refused).
    """

    outline: tuple[tuple[float, float], ...]

    def __post_init__(self):
        polygon = closed_contour(self.outline, "domain outline")
        object.__setattr__(self, "outline", tuple((float(x), float(y)) for x, y in polygon))

    @classmethod
    def from_mesh(cls, mesh: Mesh) -> "PolygonDomain":
        """The domain a mesh covers: its boundary loop (`mesh_outline`)."""
        return cls(tuple(map(tuple, mesh_outline(mesh))))

    @property
    def points(self) -> np.ndarray:
        """(P, 2) outline vertices, mm."""
        return np.asarray(self.outline, float)

    @property
    def width_mm(self) -> float:
        """The smallest extent of the outline's bounding box."""
        return float(np.ptp(self.points, axis=0).min())

    def mesh(self, spacing_mm: float) -> Mesh:
        """`polygon_mesh` of the outline with edges ≤ `spacing_mm`."""
        return polygon_mesh(self.points, spacing_mm)

    def grid(self, size: int) -> PixelGrid:
        """`size`² pixels over the square centred on the outline's bounding box."""
        return PixelGrid.around(self.points, size)

    def placement(self) -> RegionPlacement:
        """Where inclusions go: uniformly inside, with their clearance from the outline."""
        return self._placement

    @cached_property
    def _placement(self) -> RegionPlacement:
        return RegionPlacement.from_polygon(self.points)

    def fibre_positions(self, count: int) -> np.ndarray:
        """`count` points evenly spaced by arc length, the first at vertex 0."""
        return fibres_on_contour(self.points, count)

    def to_dict(self) -> dict:
        return {"kind": "polygon", "outline": [list(p) for p in self.outline]}


Domain = DiskDomain | PolygonDomain


def domain_from_dict(data: dict) -> Domain:
    """Inverse of the domains' `to_dict`; unknown kinds or keys are an error."""
    return from_kind_dict(data, {"disk": DiskDomain, "polygon": PolygonDomain}, "domain")
