"""The spectral forward model: chromophores → boundary ln-amplitude (and phase)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import equinox as eqx
import numpy as np

from ..mesh import Mesh
from ..mesh._locate import project_to_boundary
from ..mesh._nirfast import NirfastMesh
from ._fem import DiffusionFEM
from ._optics import (
    SPEED_OF_LIGHT_MM_PER_S,
    absorption,
    boundary_factor,
    diffusion_coefficient,
    reduced_scattering,
)
from ..mesh._gather import WeightedGather
from ._optodes import (
    MeasurementLayout,
    boundary_detectors,
    move_inward,
    point_sources,
    rim_positions,
)
from ._spectra import PAPER_WAVELENGTHS_NM, check_wavelengths, extinction_spectra
from ._validation import check_array

DEFAULT_SCATTER_AMPLITUDE = 1.0
"""Default scattering amplitude a (mm⁻¹) in µs' = a·(λ/1000 nm)^(−b) (NIRFAST sample mesh)."""
DEFAULT_SCATTER_POWER = 1.0
"""Default scattering power b."""
_OPTODE_SETTINGS = {"n_fibres", "angle_offset_deg", "active_fibres", "source_positions", "move_sources_inward",
                    "detector_positions", "layout"}
"""Arguments of `SpectralForwardModel.create` that a file's optodes set."""
DEFAULT_MAX_BOUNDARY_DISTANCE_MM = 3.0
"""Optodes (not fixed) farther than this from the mesh boundary are refused (`from_optodes`)."""


def default_wavelength_batch() -> int | None:
    """Wavelengths solved at once: one at a time on CPU (cache-friendly), all on accelerators."""
    return 1 if jax.default_backend() == "cpu" else None


def _check_positive(name: str, value) -> None:
    array = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(array) | (array <= 0)
    if bad.any():
        raise ValueError(f"{name} must be finite and positive, got {array[bad].ravel()[0].item()!r}")


class SpectralForwardModel(eqx.Module):
    """Multi-wavelength diffusion forward model on a fixed mesh and optode set-up.

    Maps chromophore concentrations at the mesh nodes (HbO and Hb in µM, water in %) and the
    scattering law µs' = a·(λ/1000 nm)^(−b) to ln(amplitude) — and, in the frequency domain,
    phase lag −arg Φ in radians — for every (wavelength, source, detector slot) of the
    measurement layout. Build with `SpectralForwardModel.create`; it is a pytree, so it can be
    closed over or passed through `jit`, `vmap` and `grad`.

    Attributes:
        fem: the FEM discretisation.
        extinction: (L, 3) absorption per unit HbO, Hb, water.
        sources: (L, S) source functionals per wavelength (sources sit one transport length
            1/µs'(λ) inside the rim unless fixed).
        detectors: (D,) detector read-outs.
        layout: the measurement layout (S, K).
        wavelengths_nm: the wavelengths.
        refractive_index: tissue refractive index n.
        scatter_amplitude, scatter_power: the set-up's scattering law (a mm⁻¹, b): sources sit
            at its transport length, and every method uses it unless given a law (per
            phantom, or per node) explicitly — one owner of the scattering of a set-up.
        frequency_hz: modulation frequency (0: continuous wave).
        wavelength_batch: wavelengths solved at once (None: all, via vmap).
    """

    fem: DiffusionFEM
    extinction: np.ndarray
    sources: WeightedGather
    detectors: WeightedGather
    layout: MeasurementLayout
    wavelengths_nm: tuple[float, ...] = eqx.field(static=True)
    refractive_index: float = eqx.field(static=True)
    scatter_amplitude: float = eqx.field(static=True)
    scatter_power: float = eqx.field(static=True)
    frequency_hz: float = eqx.field(static=True)
    wavelength_batch: int | None = eqx.field(static=True)

    @classmethod
    def create(
        cls,
        mesh: Mesh,
        *,
        wavelengths_nm=PAPER_WAVELENGTHS_NM,
        n_fibres: int = 16,
        angle_offset_deg: float = 0.0,
        active_fibres=None,
        source_positions=None,
        move_sources_inward: bool = False,
        detector_positions=None,
        layout: MeasurementLayout | None = None,
        scatter_amplitude: float = DEFAULT_SCATTER_AMPLITUDE,
        scatter_power: float = DEFAULT_SCATTER_POWER,
        refractive_index: float = 1.33,
        frequency_hz: float = 0.0,
        wavelength_batch: int | None | str = "auto",
        fem: DiffusionFEM | None = None,
    ) -> "SpectralForwardModel":
        """Set up the forward model.

        By default `n_fibres` fibres sit evenly on the rim (fibre 0 at `angle_offset_deg`),
        each both a detector (read on the boundary) and a source moved one transport length
        1/µs'(λ) inward, with µs' from the reference scattering (`scatter_amplitude`,
        `scatter_power`) — a property of the set-up, not of each phantom, as in NIRFAST.

        Arguments:
            mesh: the mesh (mm).
            wavelengths_nm: wavelengths in 650–1000 nm (default: the study's nine).
            n_fibres: fibres on the rim.
            angle_offset_deg: angle of fibre 0.
            active_fibres: fibres in use (default all): others are masked in the layout.
            source_positions: (S, 2) source positions, used as given for every wavelength
                (e.g. a NIRFAST `fixed` source file) unless `move_sources_inward`.
            move_sources_inward: place each of `source_positions` on the boundary (its
                nearest point) and move it one transport length inward per wavelength, as
                for the rim fibres (NIRFAST's rule for a source file not marked `fixed`).
            detector_positions: (D, 2) detector positions (default: the rim fibres).
            layout: measurement layout (default: ring layout when positions are not given).
            scatter_amplitude, scatter_power: the set-up's scattering law: source placement
                and the default of every method.
            refractive_index: n (boundary factor and speed of light).
            frequency_hz: modulation frequency; 0 for continuous wave.
            wavelength_batch: wavelengths solved at once; "auto" picks 1 on CPU, all on GPU.
            fem: a prebuilt `DiffusionFEM` for `mesh` (to share it between models).

        Returns:
            The model.
        """
        wavelengths = check_wavelengths(wavelengths_nm)
        _check_positive("scatter_amplitude", scatter_amplitude)
        if not np.isfinite(scatter_power):
            raise ValueError(f"scatter_power must be finite, got {scatter_power!r}")
        _check_positive("refractive_index", refractive_index)
        if refractive_index < 1:
            raise ValueError(f"refractive_index must be ≥ 1, got {refractive_index!r}")
        if not (np.isfinite(frequency_hz) and frequency_hz >= 0):
            raise ValueError(f"frequency_hz must be finite and ≥ 0, got {frequency_hz!r}")
        rim = rim_positions(mesh, n_fibres, angle_offset_deg=angle_offset_deg)
        if move_sources_inward and source_positions is None:
            raise ValueError("move_sources_inward needs source_positions")
        if source_positions is None or move_sources_inward:
            on_boundary = rim if source_positions is None else project_to_boundary(mesh, source_positions).points
            musp_ref = np.asarray(reduced_scattering(wavelengths, scatter_amplitude, scatter_power))
            per_wavelength = [point_sources(mesh, move_inward(mesh, on_boundary, 1.0 / m)) for m in musp_ref]
            sources = WeightedGather(
                indices=np.stack([s.indices for s in per_wavelength]),
                weights=np.stack([s.weights for s in per_wavelength]),
            )
        else:
            fixed = point_sources(mesh, source_positions)
            sources = WeightedGather(
                indices=np.repeat(fixed.indices[None], len(wavelengths), axis=0),
                weights=np.repeat(fixed.weights[None], len(wavelengths), axis=0),
            )
        detectors = boundary_detectors(mesh, rim if detector_positions is None else detector_positions)
        if layout is None:
            if source_positions is not None or detector_positions is not None:
                if sources.count != n_fibres or detectors.count != n_fibres:
                    raise ValueError("give a `layout` when sources/detectors are not the ring fibres")
            layout = MeasurementLayout.ring(n_fibres, active_fibres)
        if layout.detector_index.shape[0] != sources.count:
            raise ValueError(
                f"layout has {layout.detector_index.shape[0]} sources, the set-up {sources.count}"
            )
        if layout.detector_index.max() >= detectors.count:
            raise ValueError(f"layout refers to detector {layout.detector_index.max()} of {detectors.count}")
        if wavelength_batch == "auto":
            wavelength_batch = default_wavelength_batch()
        return cls(
            fem=DiffusionFEM.from_mesh(mesh) if fem is None else fem,
            extinction=extinction_spectra(wavelengths),
            sources=sources,
            detectors=detectors,
            layout=layout,
            wavelengths_nm=tuple(float(w) for w in wavelengths),
            refractive_index=float(refractive_index),
            scatter_amplitude=float(scatter_amplitude),
            scatter_power=float(scatter_power),
            frequency_hz=float(frequency_hz),
            wavelength_batch=wavelength_batch,
        )

    @classmethod
    def from_optodes(
        cls,
        mesh: Mesh,
        sources,
        detectors,
        link,
        *,
        link_active=None,
        fixed_sources: bool = False,
        fixed_detectors: bool = False,
        max_boundary_distance_mm: float | None = DEFAULT_MAX_BOUNDARY_DISTANCE_MM,
        **settings,
    ) -> "SpectralForwardModel":
        """The forward model of optodes anywhere on a mesh, with their measurement pairs.

        NIRFAST's placement: sources not `fixed` go onto the nearest boundary point and one
        transport length 1/µs'(λ) inward per wavelength, detectors not `fixed` onto the nearest
        boundary point (read there); fixed ones are used as given. Source s's measurement
        slots are its pairs in `link` order; inactive pairs are masked.

        Arguments:
            mesh: the mesh (mm).
            sources: (S, 2) source positions.
            detectors: (D, 2) detector positions.
            link: (M, 2) zero-based (source, detector) pairs.
            link_active: (M,) bool, default all.
            fixed_sources, fixed_detectors: use the positions as given.
            max_boundary_distance_mm: refuse optodes (not fixed) farther than this from the
                boundary — a unit or registration error, not a placement to make silently
                (None: no check).
            **settings: the other arguments of `create` (wavelengths_nm, scatter_amplitude,
                scatter_power, refractive_index, frequency_hz, ...), not the optode ones.

        Returns:
            The model.
        """
        taken = _OPTODE_SETTINGS & set(settings)
        if taken:
            raise ValueError(f"the optodes are given; do not pass {sorted(taken)}")
        sources, detectors = np.asarray(sources, float), np.asarray(detectors, float)
        link = np.asarray(link)
        if not (len(sources) and len(detectors) and len(link)):
            raise ValueError(
                f"got {len(sources)} sources, {len(detectors)} detectors and {len(link)} link pairs; "
                "a measurement set-up needs all three"
            )
        projected_detectors = project_to_boundary(mesh, detectors)
        if max_boundary_distance_mm is not None:
            for name, points, fixed, distance in (
                ("source", sources, fixed_sources, project_to_boundary(mesh, sources).distance),
                ("detector", detectors, fixed_detectors, projected_detectors.distance),
            ):
                far = np.flatnonzero(distance > max_boundary_distance_mm)
                if not fixed and len(far):
                    k = far[0]
                    raise ValueError(
                        f"{name} {k + 1} at ({points[k, 0]:.4g}, {points[k, 1]:.4g}) mm is {distance[k]:.3g} mm from "
                        f"the mesh boundary (more than {max_boundary_distance_mm:g} mm): wrong units or registration? "
                        "Optodes not marked fixed are placed on the boundary"
                    )
        return cls.create(
            mesh,
            source_positions=sources,
            move_sources_inward=not fixed_sources,
            detector_positions=detectors if fixed_detectors else projected_detectors.points,
            layout=MeasurementLayout.from_pairs(link, len(sources), active=link_active),
            **settings,
        )

    @classmethod
    def from_nirfast(cls, data: NirfastMesh, **settings) -> "SpectralForwardModel":
        """The forward model of a NIRFAST mesh with its own optodes and measurement pairs
        (`.source`, `.meas`, `.link`), placed as `from_optodes` places them (`fixed` as the
        files say); Gaussian sources (fwhm > 0) are refused.

        Arguments:
            data: a `read_nirfast` result with sources, detectors and link pairs.
            **settings: the other arguments of `from_optodes` and `create`.

        Returns:
            The model.
        """
        taken = _OPTODE_SETTINGS & set(settings)
        if taken:
            raise ValueError(f"the NIRFAST mesh sets the optodes; do not pass {sorted(taken)}")
        data.check_optodes()
        return cls.from_optodes(
            data.mesh, data.sources, data.detectors, data.link, link_active=data.link_active,
            fixed_sources=data.fixed_sources, fixed_detectors=data.fixed_detectors, **settings,
        )

    @property
    def n_wavelengths(self) -> int:
        return len(self.wavelengths_nm)

    @property
    def data_shape(self) -> tuple[int, int, int]:
        """(L, S, K): wavelengths, sources, detector slots."""
        return (self.n_wavelengths,) + self.layout.shape

    def optical_properties(
        self, chromophores, scatter_amplitude=None, scatter_power=None
    ):
        """µa and µs' (each (L, N), mm⁻¹) from chromophores and the scattering law.

        Arguments:
            chromophores: (3, N) HbO (µM), Hb (µM), water (%) at the nodes, ≥ 0.
            scatter_amplitude: a (mm⁻¹), > 0, scalar or (N,) (default: the set-up's, `self.scatter_amplitude`).
            scatter_power: b, scalar or (N,) (default: the set-up's).

        Returns:
            (µa, µs'), each (L, N).
        """
        n = self.fem.n_nodes
        chromophores = check_array("chromophores (HbO µM, Hb µM, water %)", chromophores, (3, n))
        amplitude = jnp.asarray(self.scatter_amplitude if scatter_amplitude is None else scatter_amplitude)
        power = jnp.asarray(self.scatter_power if scatter_power is None else scatter_power)
        amplitude = check_array("scatter_amplitude", amplitude, amplitude.shape, minimum=0.0, strict=True)
        power = check_array("scatter_power", power, power.shape, minimum=None)
        for name, value in (("scatter_amplitude", amplitude), ("scatter_power", power)):
            if value.shape not in ((), (n,)):
                raise ValueError(f"{name} must be a scalar or have shape ({n},), got {value.shape}")
        dtype = jnp.result_type(chromophores.dtype, float)
        mua = absorption(self.extinction, chromophores.astype(dtype))
        musp = reduced_scattering(self.wavelengths_nm, amplitude.astype(dtype), power.astype(dtype))
        musp = jnp.broadcast_to(musp if musp.ndim == 2 else musp[:, None], mua.shape)
        return mua, musp

    def _check_optics(self, mua, musp):
        shape = (self.n_wavelengths, self.fem.n_nodes)
        mua = check_array("mua", mua, shape, minimum=0.0)
        musp = check_array("musp", musp, shape, minimum=0.0, strict=True)
        dtype = jnp.result_type(mua.dtype, musp.dtype, float)
        return mua.astype(dtype), musp.astype(dtype)

    def _wave_number(self):
        if self.frequency_hz == 0:
            return None
        return 2 * np.pi * self.frequency_hz * self.refractive_index / SPEED_OF_LIGHT_MM_PER_S

    def _per_wavelength(self, fn, *arrays):
        """Map `fn` over the leading (wavelength) axis of `arrays`."""
        return jax.lax.map(lambda xs: fn(*xs), arrays, batch_size=self.wavelength_batch)

    def _system(self, mua, musp):
        kappa = diffusion_coefficient(mua, musp)
        robin = 1.0 / (2.0 * boundary_factor(jnp.asarray(self.refractive_index, mua.dtype)))
        return self.fem.system_values(mua, kappa, robin, self._wave_number()), kappa

    def fluence_from_optics(self, mua, musp):
        """Detector fluence Φ (L, S, D) for nodal µa, µs' (each (L, N)); differentiable."""
        return self._fluence(*self._check_optics(mua, musp))

    @eqx.filter_jit
    def _fluence(self, mua, musp):
        def one(mua_l, musp_l, src_nodes, src_weights):
            values, _ = self._system(mua_l, musp_l)
            rhs = WeightedGather(src_nodes, src_weights).columns(self.fem.n_nodes, values.dtype)
            return self.detectors(self.fem.solve(values, rhs).T)

        return self._per_wavelength(one, mua, musp, self.sources.indices, self.sources.weights)

    def measurements_from_fluence(self, fluence):
        """(ln A, phase) or ln A, each (L, S, K), from fluence (L, S, D).

        The phase is the lag −arg Φ in radians, wrapped to [0, 2π) as in NIRFAST (lags pass
        π across large disks at 100 MHz; they stay well below 2π).
        """
        selected = self.layout.select(fluence)
        if self.frequency_hz == 0:
            return jnp.log(jnp.abs(selected))
        return jnp.log(jnp.abs(selected)), jnp.mod(-jnp.angle(selected), 2 * jnp.pi)

    def __call__(
        self, chromophores, scatter_amplitude=None, scatter_power=None
    ):
        """Simulate measurements.

        Arguments:
            chromophores: (3, N) HbO (µM), Hb (µM), water (%) at the mesh nodes.
            scatter_amplitude: a (mm⁻¹), scalar or (N,) (default: the set-up's).
            scatter_power: b, scalar or (N,).

        Returns:
            ln A of shape (L, S, K); in the frequency domain the tuple (ln A, phase).
        """
        mua, musp = self.optical_properties(chromophores, scatter_amplitude, scatter_power)
        return self.measurements_from_fluence(self.fluence_from_optics(mua, musp))

    def homogeneous(
        self, chromophores, scatter_amplitude=None, scatter_power=None
    ):
        """Measurements of a homogeneous medium (e.g. a calibration reference phantom).

        Arguments:
            chromophores: (3,) HbO (µM), Hb (µM), water (%).
            scatter_amplitude, scatter_power: the scattering law (scalars; default the set-up's).

        Returns:
            As `__call__`.
        """
        chromophores = jnp.asarray(chromophores)
        if chromophores.shape != (3,):
            raise ValueError(f"homogeneous chromophores must have shape (3,), got {chromophores.shape}")
        return self(jnp.broadcast_to(chromophores[:, None], (3, self.fem.n_nodes)), scatter_amplitude, scatter_power)

    def optics_jacobian(self, mua, musp):
        """Exact adjoint Jacobian of the measurements w.r.t. nodal µa and µs'.

        One factorisation per wavelength serves the source and the adjoint (detector) solves;
        dΦ/dθ = −ψᵀ(∂A/∂θ)x, then d ln A = Re(dΦ/Φ) and d phase = −Im(dΦ/Φ).

        Arguments:
            mua, musp: (L, N) nodal optical properties.

        Returns:
            (d/dµa, d/dµs'), each (L, S, K, N) for ln A; in the frequency domain each is
            (L, 2, S, K, N), index 0 for ln A and 1 for phase.
        """
        _, jacobians = self._optics_jacobian(*self._check_optics(mua, musp), wrt="optics")
        return jacobians

    def linearise_absorption(self, mua, musp):
        """Measurements and their Jacobian w.r.t. nodal µa, from one set of solves.

        What Gauss-Newton needs per iteration: the chromophore Jacobian is this times the
        extinction coefficients, so it never has to be materialised.

        Arguments:
            mua, musp: (L, N) nodal optical properties.

        Returns:
            (measurements, d/dµa): measurements as `__call__` returns them, and the
            Jacobian (L, S, K, N) for ln A ((L, 2, S, K, N) in the frequency domain).
        """
        fluence, (jacobian,) = self._optics_jacobian(*self._check_optics(mua, musp), wrt="absorption")
        return self.measurements_from_fluence(fluence), jacobian

    def linearise_optics(self, mua, musp):
        """Measurements and their Jacobians w.r.t. nodal µa and µs', from one set of solves
        (what Gauss-Newton with scatter unknowns needs per iteration).

        Arguments:
            mua, musp: (L, N) nodal optical properties.

        Returns:
            (measurements, (d/dµa, d/dµs')): measurements as `__call__` returns them, each
            Jacobian as in `optics_jacobian`.
        """
        fluence, jacobians = self._optics_jacobian(*self._check_optics(mua, musp), wrt="optics")
        return self.measurements_from_fluence(fluence), jacobians

    @eqx.filter_jit
    def _optics_jacobian(self, mua, musp, wrt: str):
        """Fluence (L, S, D) and Jacobians per wavelength.

        `wrt`: "optics" for (d/dµa, d/dµs'), "absorption" for (d/dµa,), "chromophores" for
        (d/d(HbO, Hb, water),).
        """

        if wrt not in ("optics", "absorption", "chromophores"):
            raise ValueError(f"wrt must be 'optics', 'absorption' or 'chromophores', got {wrt!r}")

        def one(mua_l, musp_l, src_nodes, src_weights, extinction_l):
            values, kappa = self._system(mua_l, musp_l)
            n = self.fem.n_nodes
            sources = WeightedGather(src_nodes, src_weights).columns(n, values.dtype)
            fields = self.fem.solve(
                values, jnp.concatenate([sources, self.detectors.columns(n, values.dtype)], 1)
            )
            source_fields, adjoint_fields = jnp.split(fields, [self.sources.count], axis=1)
            fluence = self.detectors(source_fields.T)  # (S, D)
            # κ = 1/(3(µa + µs')): ∂κ/∂µa = ∂κ/∂µs' = −3κ².
            d_kappa = -3.0 * kappa**2
            sensitivity = self.fem.sensitivity
            derivatives = [sensitivity.field_derivative(source_fields, adjoint_fields, 1.0, d_kappa)]
            if wrt == "optics":
                derivatives.append(sensitivity.field_derivative(source_fields, adjoint_fields, 0.0, d_kappa))
            # Each (S, D, N) → (S, K, N), relative to the fluence.
            ratios = [self.layout.select(d / fluence[..., None], source_axis=0) for d in derivatives]
            if wrt == "chromophores":
                # µa_l = Σ_c E_lc C_c, and µs' does not depend on the chromophores.
                ratios = [ratios[0][:, :, None, :] * extinction_l.astype(kappa.dtype)[:, None]]  # (S, K, 3, N)
            if self.frequency_hz == 0:
                return fluence, tuple(r.real for r in ratios)
            return fluence, tuple(jnp.stack([r.real, -r.imag]) for r in ratios)

        extinction = jnp.asarray(self.extinction)
        return self._per_wavelength(one, mua, musp, self.sources.indices, self.sources.weights, extinction)

    def jacobian_product(
        self, chromophores, tangent, scatter_amplitude=None, scatter_power=None
    ):
        """Measurements and J·v without materialising J (forward mode; one more set of
        source solves with the same factorisation).

        Arguments:
            chromophores: (3, N) HbO (µM), Hb (µM), water (%) at the nodes.
            tangent: (3, N) direction v in the same units.
            scatter_amplitude, scatter_power: the scattering law (scalars or (N,); default the set-up's).

        Returns:
            (measurements, J·v), both as `__call__` returns measurements: (L, S, K) ln A, or
            the tuple (ln A, phase) in the frequency domain.
        """
        chromophores, tangent = self._check_direction(chromophores, tangent, "tangent")
        return jax.jvp(lambda c: self(c, scatter_amplitude, scatter_power), (chromophores,), (tangent,))

    def jacobian_transpose_product(
        self, chromophores, cotangent, scatter_amplitude=None, scatter_power=None
    ):
        """Measurements and Jᵀ·w without materialising J: the adjoint method (one adjoint
        solve per source with the forward solve's factorisation), e.g. the data-fit gradient
        Jᵀ(F(c) − y).

        Arguments:
            chromophores: (3, N) HbO (µM), Hb (µM), water (%) at the nodes.
            cotangent: w shaped like the measurements ((L, S, K), or (ln A, phase) in the
                frequency domain); unused detector slots (`layout.active` False) are ignored.
            scatter_amplitude, scatter_power: the scattering law (scalars or (N,); default the set-up's).

        Returns:
            (measurements, Jᵀ·w) with Jᵀ·w of shape (3, N), per µM, µM, %.
        """
        chromophores = check_array("chromophores (HbO µM, Hb µM, water %)", chromophores, (3, self.fem.n_nodes))
        chromophores = chromophores.astype(jnp.result_type(chromophores.dtype, float))
        measurements, pullback = jax.vjp(lambda c: self(c, scatter_amplitude, scatter_power), chromophores)
        cotangent = jax.tree.map(
            lambda m, w: self._measurement_shaped("cotangent", w, m), measurements, cotangent
        )
        (product,) = pullback(cotangent)
        return measurements, product

    def optics_jacobian_product(self, mua, musp, d_mua, d_musp):
        """Measurements and J·v for nodal µa, µs' (each (L, N)) in the direction (d_mua, d_musp).

        Returns:
            (measurements, J·v) as `jacobian_product`.
        """
        mua, musp = self._check_optics(mua, musp)
        shape = (self.n_wavelengths, self.fem.n_nodes)
        d_mua = check_array("d_mua", d_mua, shape, minimum=None).astype(mua.dtype)
        d_musp = check_array("d_musp", d_musp, shape, minimum=None).astype(mua.dtype)
        return jax.jvp(lambda a, s: self.measurements_from_fluence(self._fluence(a, s)), (mua, musp), (d_mua, d_musp))

    def optics_jacobian_transpose_product(self, mua, musp, cotangent):
        """Measurements and Jᵀ·w for nodal µa, µs' (each (L, N)); w as in
        `jacobian_transpose_product`.

        Returns:
            (measurements, (Jᵀ·w for µa, Jᵀ·w for µs')), each (L, N).
        """
        mua, musp = self._check_optics(mua, musp)
        measurements, pullback = jax.vjp(lambda a, s: self.measurements_from_fluence(self._fluence(a, s)), mua, musp)
        cotangent = jax.tree.map(lambda m, w: self._measurement_shaped("cotangent", w, m), measurements, cotangent)
        return measurements, pullback(cotangent)

    def _check_direction(self, chromophores, tangent, name: str):
        shape = (3, self.fem.n_nodes)
        chromophores = check_array("chromophores (HbO µM, Hb µM, water %)", chromophores, shape)
        tangent = check_array(name, tangent, shape, minimum=None)
        dtype = jnp.result_type(chromophores.dtype, tangent.dtype, float)
        return chromophores.astype(dtype), tangent.astype(dtype)

    def _measurement_shaped(self, name: str, value, like):
        """`value` checked against the shape of one measurement array `like`, in its dtype;
        slots the layout does not use are zeroed (their measurements are placeholders)."""
        value = check_array(name, value, like.shape, minimum=None).astype(like.dtype)
        active = jnp.asarray(self.layout.active)
        return jnp.where(active, value, 0.0)

    def jacobian(self, chromophores, scatter_amplitude=None, scatter_power=None):
        """Spectral Jacobian d(ln A)/d(HbO, Hb, water) by the adjoint method.

        Arguments:
            chromophores: (3, N) HbO (µM), Hb (µM), water (%) at the nodes.
            scatter_amplitude, scatter_power: the scattering law (scalars or (N,); default the set-up's).

        Returns:
            (L, S, K, 3, N): the derivative of ln A at each (wavelength, source, slot) with
            respect to each chromophore at each node (per µM, µM, %). In the frequency domain
            (L, 2, S, K, 3, N), index 1 of axis 1 being the phase.
        """
        mua, musp = self.optical_properties(chromophores, scatter_amplitude, scatter_power)
        _, (jacobian,) = self._optics_jacobian(*self._check_optics(mua, musp), wrt="chromophores")
        return jacobian
