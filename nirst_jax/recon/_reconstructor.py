"""Image reconstruction end to end: homogeneous fit → structural prior → Gauss-Newton → images."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..mesh import GridInterpolation, Mesh, PixelGrid
from ..physics import SpectralForwardModel
from ._basis import ReconstructionBasis
from ._calibration import HOMOGENEOUS_SOLVER, fit_homogeneous, nominal_background
from ._gauss_newton import GaussNewton, GaussNewtonStatus, check_weight
from ._regularisers import (
    DEFAULT_DRI_WIDTH,
    DEFAULT_TIKHONOV_FRACTION,
    dri_matrix,
    soft_prior_matrix,
    tikhonov_matrix,
)

METHODS = ("dri", "tikhonov", "softprior")
DEFAULT_WEIGHTS = {"dri": 10.0, "tikhonov": 10.0, "softprior": 10.0}
"""Regularisation weight α per method (relative to the mean diagonal of JᵀJ; docs/reconstruction.md)."""
DEFAULT_BASIS_SIZE = 24
"""Pixel-basis grid points per side (492 coefficients on the 82 mm disk)."""


def image_grid(mesh: Mesh, size: int = 100) -> PixelGrid:
    """The square image grid over the mesh: `PixelGrid.covering(mesh, size)`.

    For a disk centred at the origin it is [−R, R]²: the grid of `nirst forward`, of the
    datasets and of the study's 100×100 images; other meshes get the square centred on their
    bounding box.
    """
    return PixelGrid.covering(mesh, size)


def _unknowns_scale(reference) -> jnp.ndarray:
    """(3,) scale of the unknowns: the background, floored so a chromophore near zero stays usable."""
    return jnp.maximum(reference, 0.05 * jnp.asarray(nominal_background(), reference.dtype))


class Reconstruction(NamedTuple):
    """A reconstruction.

    Attributes:
        chromophores: (3, N) HbO (µM), Hb (µM), water (%) at the mesh nodes.
        images: (3, H, W) the same on the pixel grid (0 outside the mask).
        background: (3,) the homogeneous fit that started (and anchors) the iterations.
        misfit: (iterations + 1,) mean-square misfit (ln A, and weighted phase), initial then
            each accepted step.
        steps: accepted Gauss-Newton steps.
        status: int `GaussNewtonStatus` of the Gauss-Newton run (the homogeneous fit's when
            that failed): ≥ `GaussNewtonStatus.NOT_FINITE` means the run failed
            (`Reconstruction.failed`): the images are its last accepted iterate (the start if
            no step was accepted), not a finished reconstruction.
        scatter: (2, N) scattering amplitude a (mm⁻¹) and power b at the nodes when the
            solver fits scatter (`GaussNewton.fit_scatter`), else None.
        scatter_images: (2, H, W) the same on the pixel grid, else None.
    """

    chromophores: jnp.ndarray
    images: jnp.ndarray
    background: jnp.ndarray
    misfit: jnp.ndarray
    steps: jnp.ndarray
    status: jnp.ndarray
    scatter: jnp.ndarray | None = None
    scatter_images: jnp.ndarray | None = None

    @property
    def failed(self) -> jnp.ndarray:
        """Whether the run failed (bool, batched like `status`)."""
        return self.status >= GaussNewtonStatus.NOT_FINITE


class Reconstructor(eqx.Module):
    """Gauss-Newton reconstruction with a Tikhonov, DRI or soft-prior regulariser.

    A pytree: `jax.jit` it (through a lambda), `jax.vmap` it over phantoms, differentiate
    it w.r.t. `weight` (with `GaussNewton(unrolled=True)`).

    Attributes:
        model: the CW forward model.
        basis: the reconstruction basis.
        grid: interpolation between the mesh and the image grid (MRI in, images out).
        solver: Gauss-Newton settings of the reconstruction.
        method: "dri", "tikhonov" or "softprior".
        dri_width: DRI kernel width σ as a fraction of the grey-level range.
        tikhonov_fraction: identity share β of the structural priors.
    """

    model: SpectralForwardModel
    basis: ReconstructionBasis
    grid: GridInterpolation
    solver: GaussNewton
    method: str = eqx.field(static=True)
    dri_width: float = eqx.field(static=True, default=DEFAULT_DRI_WIDTH)
    tikhonov_fraction: float = eqx.field(static=True, default=DEFAULT_TIKHONOV_FRACTION)

    def __check_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")

    @classmethod
    def create(
        cls,
        model: SpectralForwardModel,
        mesh: Mesh,
        method: str = "dri",
        *,
        basis_size: int | None = DEFAULT_BASIS_SIZE,
        grid: PixelGrid | None = None,
        solver: GaussNewton = GaussNewton(),
        dri_width: float = DEFAULT_DRI_WIDTH,
        tikhonov_fraction: float = DEFAULT_TIKHONOV_FRACTION,
        scatter=None,
    ) -> "Reconstructor":
        """Set up a reconstruction.

        Arguments:
            model: forward model on `mesh` (frequency domain for ln A and phase data).
            mesh: the mesh.
            method: "dri", "tikhonov" or "softprior".
            basis_size: pixel-basis points per side, or None for the nodal basis (slow:
                3N unknowns).
            grid: the MRI/image grid (default `image_grid(mesh)`).
            solver: Gauss-Newton settings (`GaussNewton(fit_scatter=True)` also reconstructs
                the scattering amplitude and power: use it with frequency-domain data).
            dri_width, tikhonov_fraction: regulariser shape (see `dri_matrix`).
            scatter: the known scattering amplitude (mm⁻¹) and power: the model's own law
                (`model.scatter_amplitude`, `model.scatter_power`; any other is refused, since the
                model's sources are placed with it).

        Returns:
            The reconstructor.
        """
        if model.fem.n_nodes != mesh.n_nodes:
            raise ValueError(f"model has {model.fem.n_nodes} nodes, mesh {mesh.n_nodes}")
        grid = image_grid(mesh) if grid is None else grid
        basis = ReconstructionBasis.nodal(mesh) if basis_size is None else ReconstructionBasis.pixels(mesh, basis_size)
        if not (np.isfinite(dri_width) and dri_width > 0):
            raise ValueError(f"dri_width must be > 0, got {dri_width!r}")
        if not (np.isfinite(tikhonov_fraction) and tikhonov_fraction > 0):
            raise ValueError(f"tikhonov_fraction must be > 0, got {tikhonov_fraction!r}")
        if scatter is not None and tuple(float(v) for v in scatter) != (model.scatter_amplitude, model.scatter_power):
            raise ValueError(
                f"scatter {tuple(scatter)} differs from the forward model's set-up "
                f"({model.scatter_amplitude}, {model.scatter_power}); create the model with that law"
            )
        return cls(
            model=model,
            basis=basis,
            grid=GridInterpolation.build(mesh, grid),
            solver=solver,
            method=method,
            dri_width=float(dri_width),
            tikhonov_fraction=float(tikhonov_fraction),
        )

    @property
    def scatter(self) -> tuple[float, float]:
        """The scattering law (a mm⁻¹, b): the forward model's."""
        return (self.model.scatter_amplitude, self.model.scatter_power)

    def regulariser(self, structure=None) -> jnp.ndarray:
        """The (K, K) regularisation matrix of `method`.

        Arguments:
            structure: for "dri" the MRI image (H, W); for "softprior" region memberships
                (R, H, W) (one-hot labels, or fractions); ignored for "tikhonov".

        Returns:
            R.
        """
        k = self.basis.n_coefficients
        if self.method == "tikhonov":
            return tikhonov_matrix(k, jnp.result_type(float))
        if structure is None:
            raise ValueError(f"method {self.method!r} needs the MRI (dri) or a segmentation (softprior)")
        structure = jnp.asarray(structure)
        size = (self.grid.size, self.grid.size)
        if self.method == "dri":
            if structure.shape != size:
                raise ValueError(f"the MRI image must have shape {size}, got {structure.shape}")
            grey = self.basis.average(self.grid.image_to_nodes(structure))
            return dri_matrix(grey, self.dri_width, self.tikhonov_fraction)
        if structure.ndim != 3 or structure.shape[1:] != size:
            raise ValueError(f"soft-prior memberships must have shape (regions, {size[0]}, {size[1]}), got {structure.shape}")
        membership = self.basis.average(self.grid.image_to_nodes(structure)).T  # (K, R)
        membership = membership / membership.sum(1, keepdims=True)
        return soft_prior_matrix(membership, self.tikhonov_fraction)

    def __call__(self, data, structure=None, weight=None, reference=None, start=None) -> Reconstruction:
        """Reconstruct one phantom.

        Arguments:
            data: (L, S, K) calibrated ln A, or the pair (ln A, phase) for a
                frequency-domain model.
            structure: see `regulariser`.
            weight: α, scalar or (3,) ((5,) when fitting scatter; default `DEFAULT_WEIGHTS[method]`).
            reference: (3,) homogeneous starting chromophores (default: fitted to `data`, or
                with `start` its mean over the nodes); sets the scale of the unknowns. When
                fitting scatter, the fit also gives the starting scattering law (else the
                model's).
            start: (3, H, W) images to refine (e.g. a network's output), or None. The
                Gauss-Newton steps then correct `start` on the basis with the prior centred
                on it (`GaussNewton`'s `offset`), and the images are `start` plus the
                correction, so detail finer than the basis is kept.

        Returns:
            `Reconstruction`.
        """
        weight = DEFAULT_WEIGHTS[self.method] if weight is None else weight
        check_weight(weight)  # here, while the value is concrete: it names a bad α
        data, structure, reference, start = (None if value is None else jax.tree.map(jnp.asarray, value)
                                             for value in (data, structure, reference, start))
        return self._reconstruct(data, structure, jnp.asarray(weight), reference, start)

    @eqx.filter_jit
    def _reconstruct(self, data, structure, weight, reference, start) -> Reconstruction:
        """`__call__`, compiled once per structure of its arguments (reconstructors on set-ups
        of the same shapes share one program)."""
        if start is not None:
            return self._refine(data, structure, weight, reference, start)
        fit_status = jnp.asarray(GaussNewtonStatus.CONVERGED)
        law = (None, None)
        if reference is None:
            start_solver = dataclasses.replace(HOMOGENEOUS_SOLVER, scatter_lower=self.solver.scatter_lower,
                                               scatter_upper=self.solver.scatter_upper)
            fit = fit_homogeneous(self.model, data, fit_scatter=self.solver.fit_scatter,
                                  phase_weight=self.solver.phase_weight, solver=start_solver)
            reference, fit_status = fit.coefficients[:, 0], fit.status
            if self.solver.fit_scatter:
                law = tuple(fit.scatter[:, 0])
        reference = jnp.asarray(reference)
        scale = _unknowns_scale(reference)
        result = self.solver(
            self.model, self.basis, data, self.regulariser(structure), weight, reference, scale, *law
        )
        chromophores = self.basis.nodes_from(result.coefficients)
        return Reconstruction(
            chromophores=chromophores,
            images=self.grid.nodes_to_image(chromophores),
            background=reference,
            misfit=result.misfit,
            steps=result.steps,
            status=jnp.where(fit_status >= GaussNewtonStatus.NOT_FINITE, fit_status, result.status),
            **self._scatter_maps(result),
        )

    def _scatter_maps(self, result) -> dict:
        """The fitted scattering law at the nodes and on the grid (empty when not fitted)."""
        if result.scatter is None:
            return {}
        log_amplitude, power = self.basis.nodes_from(jnp.stack([jnp.log(result.scatter[0]), result.scatter[1]]))
        nodal = jnp.stack([jnp.exp(log_amplitude), power])  # as the solver's forward model saw it
        return {"scatter": nodal, "scatter_images": self.grid.nodes_to_image(nodal)}

    def _refine(self, data, structure, weight, reference, start) -> Reconstruction:
        start = jnp.asarray(start)
        size = (3, self.grid.size, self.grid.size)
        if start.shape != size:
            raise ValueError(f"start must have shape {size}, got {start.shape}")
        offset = self.grid.image_to_nodes(start)
        reference = jnp.mean(offset, axis=1) if reference is None else jnp.asarray(reference)
        scale = _unknowns_scale(reference)
        zero = jnp.zeros(3, offset.dtype)
        result = self.solver(
            self.model, self.basis, data, self.regulariser(structure), weight, zero, scale, offset=offset
        )
        correction = self.basis.nodes_from(result.coefficients)
        lower, upper = (jnp.asarray(b, offset.dtype)[:, None] for b in (self.solver.lower, self.solver.upper))
        chromophores = jnp.clip(offset + correction, lower, upper)
        images = jnp.clip(start + self.grid.nodes_to_image(correction), lower[..., None], upper[..., None])
        return Reconstruction(
            chromophores=chromophores,
            images=jnp.where(self.grid.mask, images, 0.0),
            background=reference,
            misfit=result.misfit,
            steps=result.steps,
            status=result.status,
            **self._scatter_maps(result),
        )
