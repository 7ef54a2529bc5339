"""One measurement set-up: domain, optodes, scattering law, frequency, image grid and the
registration of the MRI onto the mesh.

Everything that turns a phantom into data and data into images takes its geometry from here:
datasets, forward models, reconstruction, the physics loss and the networks. The study's
disk is one constructor (`MeasurementSetup.disk`); a NIRFAST mesh with its optodes
(`from_nirfast`) or any outline with fibres or optodes are others. `to_dict` records it in
every manifest, so a run can rebuild exactly the set-up its data came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._fingerprint import json_sha256
from ..mesh import GridInterpolation, ImageSlice, Mesh, NirfastMesh, PixelGrid
from ..physics import PAPER_WAVELENGTHS_NM, SpectralForwardModel
from ._domain import DiskDomain, Domain, PolygonDomain, domain_from_dict
from ._optodes import OptodePositions, Optodes, RimFibres, optodes_from_dict
from ._registration import RigidRegistration


@dataclass(frozen=True)
class MeasurementSetup:
    """An imaging set-up, independent of any one mesh of it.

    Attributes:
        domain: the imaged region (`DiskDomain` or `PolygonDomain`).
        optodes: `RimFibres` or `OptodePositions`.
        scatter: (a mm⁻¹, b) of the set-up's scattering law µs' = a (λ/1000 nm)^(−b): source
            placement, the homogeneous reference and every method's default.
        frequency_hz: modulation frequency (0: continuous wave).
        image_size: pixels per side of the image grid over the domain (`grid`).
        mri_registration: the rigid motion of an MRI slice, once placed by its own affine, onto
            the mesh (`place_mri`; default none).
    """

    domain: Domain = field(default_factory=DiskDomain)
    optodes: Optodes = field(default_factory=RimFibres)
    scatter: tuple[float, float] = (1.0, 1.0)
    frequency_hz: float = 0.0
    image_size: int = 100
    mri_registration: RigidRegistration = field(default_factory=RigidRegistration)

    def __post_init__(self):
        if not isinstance(self.domain, (DiskDomain, PolygonDomain)):
            raise TypeError(f"domain must be a DiskDomain or PolygonDomain, got {type(self.domain).__name__}")
        if not isinstance(self.optodes, (RimFibres, OptodePositions)):
            raise TypeError(f"optodes must be RimFibres or OptodePositions, got {type(self.optodes).__name__}")
        self.optodes.check(self.domain)
        scatter = tuple(float(v) for v in np.ravel(self.scatter))
        if len(scatter) != 2 or not (np.isfinite(scatter).all() and scatter[0] > 0):
            raise ValueError(f"scatter must be (a > 0, b) finite, got {self.scatter!r}")
        object.__setattr__(self, "scatter", scatter)
        if not (np.isfinite(self.frequency_hz) and self.frequency_hz >= 0):
            raise ValueError(f"frequency_hz must be finite and ≥ 0, got {self.frequency_hz!r}")
        object.__setattr__(self, "frequency_hz", float(self.frequency_hz))
        if isinstance(self.image_size, bool) or int(self.image_size) != self.image_size or self.image_size < 8:
            raise ValueError(f"image_size must be an integer ≥ 8, got {self.image_size!r}")
        object.__setattr__(self, "image_size", int(self.image_size))
        if not isinstance(self.mri_registration, RigidRegistration):
            raise TypeError(f"mri_registration must be a RigidRegistration, got {type(self.mri_registration).__name__}")
        if self.mri_registration.is_identity:  # e.g. a full turn: the same set-up as none, and so recorded
            object.__setattr__(self, "mri_registration", RigidRegistration())

    @classmethod
    def disk(cls, radius_mm: float = 41.0, n_fibres: int = 16, *, angle_offset_deg: float = 0.0, **settings) -> "MeasurementSetup":
        """The reference study's set-up: `n_fibres` fibres evenly on a disk of `radius_mm`.

        Arguments:
            radius_mm: disk radius.
            n_fibres: rim fibres.
            angle_offset_deg: angle of fibre 0.
            **settings: `scatter`, `frequency_hz`, `image_size`, `mri_registration`.
        """
        return cls(DiskDomain(radius_mm), RimFibres(n_fibres, angle_offset_deg), **settings)

    @classmethod
    def from_nirfast(cls, data: NirfastMesh, **settings) -> "MeasurementSetup":
        """The domain of a NIRFAST mesh (its boundary) with the mesh's own optodes and pairs
        (`.source`, `.meas`, `.link`; inactive pairs dropped).

        Arguments:
            data: a `read_nirfast` result with optodes.
            **settings: `scatter`, `frequency_hz`, `image_size`, `mri_registration`.
        """
        optodes = OptodePositions.from_nirfast(data)
        return cls(PolygonDomain.from_mesh(data.mesh), optodes, **settings)

    @property
    def is_ring(self) -> bool:
        """Rim fibres, each a source and a detector: fibre subsets and fibre dropout apply."""
        return isinstance(self.optodes, RimFibres)

    def mesh(self, spacing_mm: float) -> Mesh:
        """A mesh of the domain with edges ≤ `spacing_mm`."""
        return self.domain.mesh(spacing_mm)

    def grid(self) -> PixelGrid:
        """The image grid: `image_size`² pixels over the domain's bounding square."""
        return self.domain.grid(self.image_size)

    def interpolation(self, mesh: Mesh) -> GridInterpolation:
        """Interpolation between `mesh` and the image grid (its `mask`: pixels inside the domain)."""
        return GridInterpolation.build(mesh, self.grid())

    def place_mri(self, image: ImageSlice) -> ImageSlice:
        """An MRI slice in mesh coordinates: `image` (placed by its affine) moved by the set-up's
        `mri_registration`."""
        return self.mri_registration.apply(image)

    def mri_on_grid(self, image: ImageSlice, mesh: Mesh) -> np.ndarray:
        """The registered MRI resampled onto the image grid, 0 outside the mesh: the MRI input of
        DRI's prior and of the networks.

        Arguments:
            image: the MRI slice, placed by its own affine.
            mesh: a mesh of the domain (its pixels must be covered by the MRI).

        Returns:
            (image_size, image_size) float64.
        """
        return self.place_mri(image).on_grid(self.grid(), np.asarray(self.interpolation(mesh).mask))

    def placement(self):
        """Where inclusions of a random phantom may go (`sample_phantom`'s `placement`)."""
        return self.domain.placement()

    def layout(self, active_fibres: int | None = None):
        """The measurement layout (S, K), with only `active_fibres` evenly spaced rim fibres."""
        return self.optodes.layout(active_fibres)

    def measurement_mask(self, active_fibres: int | None = None) -> np.ndarray:
        """(S, K) bool: measurements present (used slots of the active fibres)."""
        return np.asarray(self.layout(active_fibres).active)

    def detector_positions(self, mesh: Mesh) -> np.ndarray:
        """(D, 2) where the detectors read `mesh`'s boundary, mm (the fibres of a ring)."""
        return self.optodes.positions(self.domain, mesh)

    def forward_model(self, mesh: Mesh, wavelengths_nm=PAPER_WAVELENGTHS_NM, *, active_fibres: int | None = None,
                      **settings) -> SpectralForwardModel:
        """The forward model of the set-up on `mesh` (any mesh of the domain).

        Arguments:
            mesh: the mesh.
            wavelengths_nm: the wavelengths.
            active_fibres: evenly spaced rim fibres in use (None: all).
            **settings: further `SpectralForwardModel.create` arguments (`wavelength_batch`,
                `refractive_index`, `fem`); the set-up's scattering law and frequency are its own.

        Returns:
            The model.
        """
        return self.optodes.forward_model(
            self.domain, mesh, active_fibres, wavelengths_nm=tuple(wavelengths_nm), scatter_amplitude=self.scatter[0],
            scatter_power=self.scatter[1], frequency_hz=self.frequency_hz, **settings,
        )

    def to_dict(self) -> dict:
        """A JSON-ready description (inverse: `MeasurementSetup.from_dict`)."""
        record = {"domain": self.domain.to_dict(), "optodes": self.optodes.to_dict(), "scatter": list(self.scatter),
                  "frequency_hz": self.frequency_hz, "image_size": self.image_size}
        # Recorded only when it moves the MRI, so the set-ups (and fingerprints) of existing
        # datasets, whose MRI is drawn on the grid, stay as they were.
        if not self.mri_registration.is_identity:
            record["mri_registration"] = self.mri_registration.to_dict()
        return record

    @classmethod
    def from_dict(cls, data: dict) -> "MeasurementSetup":
        """Rebuild from `to_dict` output; unknown keys are an error."""
        unknown = set(data) - {"domain", "optodes", "scatter", "frequency_hz", "image_size", "mri_registration"}
        if unknown:
            raise ValueError(f"unknown measurement set-up keys {sorted(unknown)}")
        data = dict(data)
        if "mri_registration" in data:
            data["mri_registration"] = RigidRegistration.from_dict(data["mri_registration"])
        data["domain"] = domain_from_dict(data.get("domain", {"kind": "disk"}))
        data["optodes"] = optodes_from_dict(data.get("optodes", {"kind": "rim"}))
        return cls(**data)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of `to_dict`: equal for equal set-ups."""
        return json_sha256(self.to_dict())
