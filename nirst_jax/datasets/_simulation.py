"""One random phantom → everything stored for it: truth on mesh and grid, MRI, measurements."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._config_dict import config_from_dict
from .._random import purpose_key
from ..geometry import DiskDomain, MeasurementSetup, OptodePositions, PolygonDomain, RimFibres, domain_from_dict, optodes_from_dict
from ..mesh import GridInterpolation, Mesh, PixelGrid
from ..phantoms import (
    Coverage,
    PhantomConfig,
    add_mri_noise,
    inside_circle,
    inside_glandular,
    mri_image,
    paint,
    sample_phantom,
)
from ..physics import PAPER_WAVELENGTHS_NM, SpectralForwardModel, add_amplitude_noise, check_wavelengths

PRECISIONS = ("float32", "float64")


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines a dataset besides its seed and size.

    The measurement set-up (`measurement_setup`) is the study's disk of
    `phantoms.radius_mm` with `n_fibres` rim fibres unless `domain` or `optodes` say otherwise.

    Attributes:
        phantoms: the phantom distribution.
        wavelengths_nm: measurement wavelengths (650–1000 nm).
        n_fibres: fibres evenly on the rim, each a source and a detector (unless `optodes`).
        mesh_spacing_mm: largest edge of the simulation mesh.
        noise: relative Gaussian noise on the amplitudes (0.02 = 2 %).
        image_size: pixels per side of the target and MRI images (grid over the domain).
        precision: "float32" or "float64" for the forward solves.
        domain: a `PolygonDomain` to image instead of the disk (inclusions are placed inside
            it; `phantoms.radius_mm` then only bounds the disk-specific checks).
        optodes: `OptodePositions` instead of the `n_fibres` rim fibres.
    """

    phantoms: PhantomConfig = field(default_factory=PhantomConfig)
    wavelengths_nm: tuple[float, ...] = PAPER_WAVELENGTHS_NM
    n_fibres: int = 16
    mesh_spacing_mm: float = 2.0
    noise: float = 0.02
    image_size: int = 100
    precision: str = "float32"
    domain: PolygonDomain | None = None
    optodes: OptodePositions | None = None

    def __post_init__(self):
        object.__setattr__(self, "wavelengths_nm", tuple(float(w) for w in check_wavelengths(self.wavelengths_nm)))
        if isinstance(self.n_fibres, bool) or int(self.n_fibres) != self.n_fibres or self.n_fibres < 2:
            raise ValueError(f"n_fibres must be an integer ≥ 2, got {self.n_fibres!r}")
        object.__setattr__(self, "n_fibres", int(self.n_fibres))
        if self.domain is not None and not isinstance(self.domain, PolygonDomain):
            raise TypeError(f"domain must be a PolygonDomain (None: the disk), got {type(self.domain).__name__}")
        if self.optodes is not None and not isinstance(self.optodes, OptodePositions):
            raise TypeError(f"optodes must be OptodePositions (None: n_fibres rim fibres), got {type(self.optodes).__name__}")
        width = self.measurement_setup().domain.width_mm
        if not (np.isfinite(self.mesh_spacing_mm) and 0 < self.mesh_spacing_mm < width / 4):
            raise ValueError(f"mesh_spacing_mm must be in (0, {width / 4:g}) (a quarter of the domain's width), got {self.mesh_spacing_mm!r}")
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be finite and ≥ 0, got {self.noise!r}")
        if isinstance(self.image_size, bool) or int(self.image_size) != self.image_size or self.image_size < 8:
            raise ValueError(f"image_size must be an integer ≥ 8, got {self.image_size!r}")
        object.__setattr__(self, "image_size", int(self.image_size))
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.domain is not None:
            _check_room(self.phantoms, self.domain.placement())

    def measurement_setup(self) -> MeasurementSetup:
        """The set-up the data are simulated with (scattering law: `PhantomConfig.reference_scatter`)."""
        return MeasurementSetup(
            DiskDomain(self.phantoms.radius_mm) if self.domain is None else self.domain,
            RimFibres(self.n_fibres) if self.optodes is None else self.optodes,
            scatter=self.phantoms.reference_scatter,
            image_size=self.image_size,
        )

    @property
    def dtype(self):
        if self.precision == "float64" and not jax.config.jax_enable_x64:
            raise ValueError('precision "float64" needs jax.config.update("jax_enable_x64", True)')
        return jnp.dtype(self.precision)

    def grid(self) -> PixelGrid:
        """The image grid: `image_size`² pixels over the domain's bounding square."""
        return self.measurement_setup().grid()

    def mesh(self, spacing_mm: float | None = None) -> Mesh:
        """The simulation mesh, or a mesh of the same domain with edges ≤ `spacing_mm`."""
        return self.measurement_setup().mesh(self.mesh_spacing_mm if spacing_mm is None else spacing_mm)

    def forward_model(self, mesh: Mesh | None = None, active_fibres: int | None = None) -> SpectralForwardModel:
        """The set-up's forward model: on `mesh` (default the simulation mesh), with the
        wavelengths, optodes and reference scattering law (`PhantomConfig.reference_scatter`);
        only `active_fibres` evenly spaced rim fibres in use (None: all)."""
        return self.measurement_setup().forward_model(self.mesh() if mesh is None else mesh, self.wavelengths_nm,
                                                      active_fibres=active_fibres)

    def reference_ln_amplitude(self, mesh: Mesh | None = None) -> np.ndarray:
        """(L, S, K) ln A of the homogeneous reference phantom (the nominal background, the
        set-up's scattering law) on `mesh` (default the simulation mesh), in float64 where
        enabled: what measurements are calibrated against for a reconstruction on that mesh."""
        nominal = jnp.asarray(self.phantoms.tissue.nominal_background(), jnp.result_type(float))
        return np.asarray(self.forward_model(mesh).homogeneous(nominal))

    def to_dict(self) -> dict:
        """A JSON-ready description (inverse: `SimulationConfig.from_dict`)."""
        data = asdict(self)
        data["phantoms"] = self.phantoms.to_dict()
        data["wavelengths_nm"] = list(self.wavelengths_nm)
        # Left out when unset, so the disk's configs describe themselves as before (stores still resume).
        for name in ("domain", "optodes"):
            value = getattr(self, name)
            if value is None:
                del data[name]
            else:
                data[name] = value.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "SimulationConfig":
        """Rebuild from `to_dict` output; unknown keys are an error."""
        return config_from_dict(cls, data, "simulation config", {
            "phantoms": PhantomConfig.from_dict, "domain": domain_from_dict, "optodes": optodes_from_dict})


def _check_room(phantoms: PhantomConfig, placement) -> None:
    """Refuse a distribution whose inclusions cannot be placed inside the domain."""
    from ..phantoms._decoupling import GLANDULAR_EXTENT

    margin = phantoms.margin_mm
    if phantoms.two_inclusion_probability < 1:
        placement.check(f"a {max(phantoms.single_diameters_mm):g} mm inclusion", margin + max(phantoms.single_diameters_mm) / 2)
    if phantoms.two_inclusion_probability > 0:
        radius = phantoms.pair_diameter_mm / 2
        placement.check(f"two {phantoms.pair_diameter_mm:g} mm inclusions", margin + radius, radius + phantoms.pair_gap_mm[1] / 2)
    if phantoms.decoupling.glandular > 0:
        placement.check("the fibroglandular region", margin + GLANDULAR_EXTENT * phantoms.decoupling.glandular_radius_mm[1])


class PhantomSimulator(eqx.Module):
    """Maps a `jax.random` key to one simulated phantom (traceable; vmap for batches).

    Attributes:
        model: the spectral forward model on the simulation mesh.
        node_coverage: area-weighted coverage of mesh nodes.
        pixel_coverage: coverage of image pixels.
        mask: (H, W) pixels inside the domain.
        placement: where inclusions may go (`MeasurementSetup.placement`).
        config: the simulation config.
    """

    model: SpectralForwardModel
    node_coverage: Coverage
    pixel_coverage: Coverage
    mask: np.ndarray
    placement: eqx.Module
    config: SimulationConfig = eqx.field(static=True)

    @classmethod
    def create(cls, config: SimulationConfig, mesh: Mesh | None = None) -> "PhantomSimulator":
        """Build the mesh (unless given), forward model and coverage operators for `config`."""
        mesh = config.mesh() if mesh is None else mesh
        grid = config.grid()
        return cls(
            model=config.forward_model(mesh),
            node_coverage=Coverage.nodes(mesh),
            pixel_coverage=Coverage.pixels(grid),
            mask=GridInterpolation.build(mesh, grid).mask,
            placement=config.measurement_setup().placement(),
            config=config,
        )

    def _circle_fractions(self, coverage, centers, radii, present):
        def one(center, radius, here):
            return coverage(lambda points: inside_circle(points, center, radius)) * here

        return jax.vmap(one)(centers, radii, present)

    def __call__(self, key) -> dict[str, jnp.ndarray]:
        """Simulate one phantom.

        Arguments:
            key: `jax.random` key of the phantom.

        Returns:
            Dict of arrays: `ln_amplitude` (L, S, K) with noise, `ln_amplitude_clean`,
            `ln_amplitude_background` (the phantom's homogeneous background, noise-free),
            `mri` (H, W), `targets` (3, H, W) HbO/Hb/water, `chromophores_nodes` (3, N), and
            the phantom parameters (`centers`, `radii`, `present`, `background`, `lesions`,
            `scatter`, `mri_centers`, `mri_radii`; with `Decoupling` options also
            `mri_greys` and the fibroglandular region's `glandular_*` and `glandular` values).
        """
        config = self.config
        k_phantom, k_mri, k_data = (purpose_key(key, p) for p in ("phantom", "mri-noise", "amplitude-noise"))
        p = sample_phantom(config.phantoms, k_phantom, self.placement)
        node_fractions = self._circle_fractions(self.node_coverage, p.centers, p.radii, p.present)
        pixel_fractions = self._circle_fractions(self.pixel_coverage, p.centers, p.radii, p.present)
        mri_config = config.phantoms.mri
        if mri_config.mismatch_mm > 0:
            mri_fractions = self._circle_fractions(self.pixel_coverage, p.mri_centers, p.mri_radii, p.present)
        else:
            mri_fractions = pixel_fractions
        values, greys = p.lesions, p.mri_greys
        decoupled = config.phantoms.decoupling.active
        if decoupled:  # the fibroglandular region lies under the inclusions
            glandular = lambda coverage: coverage(lambda points: inside_glandular(p, points))[None]  # noqa: E731
            node_fractions = jnp.concatenate([glandular(self.node_coverage), node_fractions])
            pixel_fractions = jnp.concatenate([glandular(self.pixel_coverage), pixel_fractions])
            mri_fractions = jnp.concatenate([pixel_fractions[:1], mri_fractions])
            values = jnp.concatenate([p.glandular[None], values])
            greys = jnp.concatenate([jnp.full(1, config.phantoms.decoupling.glandular_grey, greys.dtype), greys])
        chromophores = paint(p.background, node_fractions, values)
        targets = jnp.where(self.mask, paint(p.background, pixel_fractions, values), 0.0)
        mri = add_mri_noise(mri_image(mri_fractions, greys, mri_config.background_grey, self.mask), mri_config.noise, k_mri)

        dtype = config.dtype
        amplitude, power = p.scatter.astype(dtype)
        clean = self.model(chromophores.astype(dtype), amplitude, power)
        homogeneous = jnp.broadcast_to(p.background[:, None], chromophores.shape).astype(dtype)
        background = self.model(homogeneous, amplitude, power)
        noisy = add_amplitude_noise(clean, config.noise, jax.random.normal(k_data, clean.shape, dtype))
        return dict(
            ln_amplitude=noisy,
            ln_amplitude_clean=clean,
            ln_amplitude_background=background,
            mri=mri.astype(jnp.float32),
            targets=targets.astype(jnp.float32),
            chromophores_nodes=chromophores.astype(jnp.float32),
            centers=p.centers.astype(jnp.float32),
            radii=p.radii.astype(jnp.float32),
            present=p.present,
            background=p.background.astype(jnp.float32),
            lesions=p.lesions.astype(jnp.float32),
            scatter=p.scatter.astype(jnp.float32),
            mri_centers=p.mri_centers.astype(jnp.float32),
            mri_radii=p.mri_radii.astype(jnp.float32),
            **(
                dict(
                    mri_greys=p.mri_greys.astype(jnp.float32),
                    glandular_present=p.glandular_present,
                    glandular_center=p.glandular_center.astype(jnp.float32),
                    glandular_radius=p.glandular_radius.astype(jnp.float32),
                    glandular_shape=p.glandular_shape.astype(jnp.float32),
                    glandular=p.glandular.astype(jnp.float32),
                )
                if decoupled
                else {}
            ),
        )
