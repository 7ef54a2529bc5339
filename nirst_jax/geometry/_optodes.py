"""Where light goes in and comes out: fibres evenly around the rim, or optodes anywhere.

Both describe positions independently of any mesh, so the same optodes can be placed on every
mesh of a domain (data, physics and reconstruction meshes differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..mesh import Mesh, NirfastMesh, project_to_boundary
from ..physics import MeasurementLayout, SpectralForwardModel, rim_positions
from ._described import from_kind_dict
from ._domain import DiskDomain, Domain


@dataclass(frozen=True)
class RimFibres:
    """`count` fibres evenly around the boundary, each a source and a detector; source s is
    measured at every other fibre (the study's ring: 16 fibres, (16, 15) measurements).

    On a disk fibre 0 sits at `angle_offset_deg` (counter-clockwise from +x); on any other
    outline the fibres are evenly spaced by arc length from the outline's vertex 0 (and
    `angle_offset_deg` must be 0).

    Attributes:
        count: fibres (≥ 2).
        angle_offset_deg: angle of fibre 0 on a disk.
    """

    count: int = 16
    angle_offset_deg: float = 0.0

    def __post_init__(self):
        if isinstance(self.count, bool) or int(self.count) != self.count or self.count < 2:
            raise ValueError(f"rim fibre count must be an integer ≥ 2, got {self.count!r}")
        object.__setattr__(self, "count", int(self.count))
        if not np.isfinite(self.angle_offset_deg):
            raise ValueError(f"angle_offset_deg must be finite, got {self.angle_offset_deg!r}")
        object.__setattr__(self, "angle_offset_deg", float(self.angle_offset_deg))

    def check(self, domain: Domain) -> None:
        """Refuse settings the domain cannot honour."""
        if not isinstance(domain, DiskDomain) and self.angle_offset_deg != 0:
            raise ValueError("angle_offset_deg places fibres on a disk; on an outline fibre 0 sits at its vertex 0")

    def layout(self, active_fibres: int | None = None) -> MeasurementLayout:
        """The ring layout, with only `active_fibres` evenly spaced fibres in use (None: all)."""
        from ..models import evenly_spaced_fibres

        fibres = None if active_fibres is None else evenly_spaced_fibres(self.count, active_fibres)
        return MeasurementLayout.ring(self.count, fibres)

    def positions(self, domain: Domain, mesh: Mesh) -> np.ndarray:
        """(count, 2) fibre positions on `mesh`'s boundary, mm."""
        if isinstance(domain, DiskDomain):
            return rim_positions(mesh, self.count, angle_offset_deg=self.angle_offset_deg)
        return project_to_boundary(mesh, domain.fibre_positions(self.count)).points

    def forward_model(self, domain: Domain, mesh: Mesh, active_fibres: int | None = None, **settings) -> SpectralForwardModel:
        """The forward model of these fibres on `mesh` (sources one transport length inward).

        Arguments:
            domain: the domain `mesh` covers.
            mesh: the mesh.
            active_fibres: evenly spaced fibres in use (None: all); the others are masked.
            **settings: the other arguments of `SpectralForwardModel.create`.
        """
        layout = self.layout(active_fibres)
        if isinstance(domain, DiskDomain):
            return SpectralForwardModel.create(mesh, n_fibres=self.count, angle_offset_deg=self.angle_offset_deg,
                                               layout=layout, **settings)
        positions = self.positions(domain, mesh)
        return SpectralForwardModel.create(mesh, n_fibres=self.count, source_positions=positions, move_sources_inward=True,
                                           detector_positions=positions, layout=layout, **settings)

    def to_dict(self) -> dict:
        return {"kind": "rim", "count": self.count, "angle_offset_deg": self.angle_offset_deg}


def _pairs(name: str, values, shape_tail: int, kind=float) -> tuple:
    array = np.asarray(values, kind)
    if array.ndim != 2 or array.shape[1] != shape_tail or not len(array):
        raise ValueError(f"optode {name} must have shape (n ≥ 1, {shape_tail}), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"optode {name} have NaN or infinite values")
    return tuple(tuple(kind(v) for v in row) for row in array.tolist())


@dataclass(frozen=True)
class OptodePositions:
    """Sources and detectors anywhere, with the (source, detector) pairs measured (a NIRFAST
    mesh's `.source/.meas/.link`, an optode file, a SNIRF probe).

    Placed as NIRFAST places them (`SpectralForwardModel.from_optodes`): optodes not fixed go
    onto the nearest boundary point, sources then one transport length inward.

    Attributes:
        sources: ((x, y), ...) mm.
        detectors: ((x, y), ...) mm.
        link: ((source, detector), ...) zero-based pairs, in data order per source.
        fixed_sources, fixed_detectors: positions used as given.
    """

    sources: tuple
    detectors: tuple
    link: tuple
    fixed_sources: bool = False
    fixed_detectors: bool = False

    def __post_init__(self):
        object.__setattr__(self, "sources", _pairs("sources", self.sources, 2))
        object.__setattr__(self, "detectors", _pairs("detectors", self.detectors, 2))
        link = _pairs("link", self.link, 2, int)
        for s, d in link:
            if not (0 <= s < len(self.sources) and 0 <= d < len(self.detectors)):
                raise ValueError(f"link pair ({s}, {d}) refers to a missing optode "
                                 f"({len(self.sources)} sources, {len(self.detectors)} detectors, zero-based)")
        object.__setattr__(self, "link", link)
        object.__setattr__(self, "fixed_sources", bool(self.fixed_sources))
        object.__setattr__(self, "fixed_detectors", bool(self.fixed_detectors))

    @classmethod
    def from_nirfast(cls, data: NirfastMesh) -> "OptodePositions":
        """The optodes of a NIRFAST mesh's `.source/.meas/.link` (active link pairs only).

        Raises:
            ValueError: the mesh lacks sources, detectors or link pairs, or has Gaussian sources
                (`NirfastMesh.check_optodes`).
        """
        data.check_optodes()
        link = np.asarray(data.link)[np.asarray(data.link_active, bool)]
        return cls(data.sources, data.detectors, link, data.fixed_sources, data.fixed_detectors)

    @property
    def source_xy(self) -> np.ndarray:
        """(S, 2) source positions, mm."""
        return np.asarray(self.sources, float)

    @property
    def detector_xy(self) -> np.ndarray:
        """(D, 2) detector positions, mm."""
        return np.asarray(self.detectors, float)

    @property
    def pairs(self) -> np.ndarray:
        """(M, 2) zero-based (source, detector) pairs."""
        return np.asarray(self.link, np.int64)

    def check(self, domain: Domain) -> None:
        """Nothing to refuse up front: placement is checked on each mesh."""

    def layout(self, active_fibres: int | None = None) -> MeasurementLayout:
        """The layout of the link pairs (`active_fibres` is refused: it thins rim fibres)."""
        if active_fibres is not None:
            raise ValueError("active_fibres thins evenly spaced rim fibres; these optodes are placed individually")
        return MeasurementLayout.from_pairs(np.asarray(self.link), len(self.sources))

    def positions(self, domain: Domain | None, mesh: Mesh) -> np.ndarray:
        """(D, 2) detector positions as read on `mesh`, mm (`domain` unused: positions are absolute)."""
        return self.detector_xy if self.fixed_detectors else project_to_boundary(mesh, self.detector_xy).points

    def forward_model(self, domain: Domain | None, mesh: Mesh, active_fibres: int | None = None,
                      **settings) -> SpectralForwardModel:
        """The forward model of these optodes on `mesh` (see the class notes).

        Arguments:
            domain: the domain `mesh` covers (unused, may be None: positions are absolute).
            mesh: the mesh.
            active_fibres: must be None.
            **settings: the other arguments of `SpectralForwardModel.from_optodes` and `create`.

        Returns:
            The model.
        """
        self.layout(active_fibres)
        return SpectralForwardModel.from_optodes(
            mesh, self.source_xy, self.detector_xy, self.pairs,
            fixed_sources=self.fixed_sources, fixed_detectors=self.fixed_detectors, **settings,
        )

    def to_dict(self) -> dict:
        return {"kind": "positions", "sources": [list(p) for p in self.sources],
                "detectors": [list(p) for p in self.detectors], "link": [list(p) for p in self.link],
                "fixed_sources": self.fixed_sources, "fixed_detectors": self.fixed_detectors}


Optodes = RimFibres | OptodePositions


def optodes_from_dict(data: dict) -> Optodes:
    """Inverse of the optodes' `to_dict`; unknown kinds or keys are an error."""
    return from_kind_dict(data, {"rim": RimFibres, "positions": OptodePositions}, "optodes")
