"""Physics consistency: re-simulate predicted chromophore images and compare with the input data."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..datasets import Normalisation
from ..geometry import MeasurementSetup
from ..mesh import GridInterpolation, Mesh
from ..physics import SpectralForwardModel

# Bounds on concentrations before the forward solve: above zero (µa > 0 at every wavelength)
# and far above breast tissue (so the prediction is untouched where it is plausible), which
# keeps the far-side amplitudes inside float32's range.
DEFAULT_LOWER = (0.5, 0.5, 1.0)
DEFAULT_UPPER = (200.0, 200.0, 100.0)


class PhysicsLoss(eqx.Module):
    """mean over active measurements of (ŝ(c_pred) − s)², all in normalised signal units.

    c_pred: normalised network output → µM / % (`normalisation.images`) → clipped to
    [lower, upper] → mesh nodes (bilinear from pixel centres inside the disk) → µa(λ), µs'(λ) →
    FEM forward model F on the physics mesh → ln A. Like a measurement, the prediction is
    referenced to the homogeneous reference phantom *on the same mesh*, so the discretisation
    offset between the physics mesh and the data's mesh cancels:

        ŝ = (F(c_pred) − F(c_ref) − mean_λ) / std_λ,   s = (y − y_ref − mean_λ) / std_λ,

    y_ref the dataset's reference measurement (its own mesh), mean/std the dataset's. Batched
    with `vmap`; the forward solve is exact on far-side detectors in float32
    (docs/physics.md), so the loss and its gradient stay finite.

    Attributes:
        model: spectral forward model on the physics mesh.
        interpolation: pixel grid ↔ mesh nodes.
        normalisation: the dataset's normalisation with its reference replaced by F(c_ref) on
            the physics mesh.
        active: (S, K) bool, measurements compared (absent fibres and unused slots excluded).
        lower, upper: (3,) concentration bounds.
        scatter: (a, b) of µs' = a (λ/1000 nm)^(−b).
    """

    model: SpectralForwardModel
    interpolation: GridInterpolation
    normalisation: Normalisation
    active: np.ndarray
    lower: jnp.ndarray
    upper: jnp.ndarray
    scatter: tuple[float, float] = eqx.field(static=True)

    @classmethod
    def create(
        cls,
        mesh: Mesh,
        setup: MeasurementSetup,
        normalisation: Normalisation,
        *,
        reference_chromophores,
        wavelengths_nm,
        active=None,
        lower=DEFAULT_LOWER,
        upper=DEFAULT_UPPER,
    ) -> "PhysicsLoss":
        """Build the forward model and grid operators.

        Arguments:
            mesh: the physics mesh (the dataset's, or another mesh of the same domain).
            setup: the data's measurement set-up (optodes, scattering law fixed for the
                dataset, the image grid of the network's output).
            normalisation: the dataset's normalisation.
            reference_chromophores: (3,) HbO (µM), Hb (µM), water (%) of the homogeneous
                reference phantom the dataset's signals are referenced to.
            wavelengths_nm: measurement wavelengths (must match the normalisation's L).
            active: (S, K) bool mask of measurements to compare (default all).
            lower, upper: concentration bounds (HbO µM, Hb µM, water %).
        """
        model = setup.forward_model(mesh, wavelengths_nm)
        scatter = setup.scatter
        if model.data_shape != tuple(normalisation.reference.shape):
            raise ValueError(f"forward model gives {model.data_shape}, the normalisation expects {normalisation.reference.shape}")
        layout_active = np.asarray(model.layout.active)
        active = layout_active if active is None else layout_active & np.asarray(active, bool)
        lower, upper = np.asarray(lower, float), np.asarray(upper, float)
        if lower.shape != (3,) or upper.shape != (3,) or not (0 <= lower).all() or not (lower < upper).all():
            raise ValueError(f"bounds must be (3,) with 0 ≤ lower < upper, got {lower}, {upper}")
        reference_chromophores = np.asarray(reference_chromophores, float)
        if reference_chromophores.shape != (3,) or not (np.isfinite(reference_chromophores).all() and (reference_chromophores >= 0).all()):
            raise ValueError(f"reference_chromophores must be (3,) finite and ≥ 0, got {reference_chromophores}")
        reference = model.homogeneous(jnp.asarray(reference_chromophores, jnp.result_type(float)), *scatter)
        normalisation = normalisation.with_reference(reference)
        return cls(
            model=model,
            interpolation=setup.interpolation(mesh),
            normalisation=normalisation,
            active=active,
            lower=jnp.asarray(lower, jnp.float32),
            upper=jnp.asarray(upper, jnp.float32),
            scatter=(float(scatter[0]), float(scatter[1])),
        )

    @classmethod
    def for_dataset(cls, dataset, *, mesh: Mesh | None = None, active=None, normalisation=None, **bounds) -> "PhysicsLoss":
        """The physics loss of a dataset store (its mesh unless `mesh` is given; its
        normalisation unless `normalisation` is given)."""
        config = dataset.config
        scatter = config.phantoms.known_scatter("the physics loss")
        return cls.create(
            dataset.mesh if mesh is None else mesh,
            dataclasses.replace(config.measurement_setup(), scatter=scatter),
            dataset.normalisation if normalisation is None else normalisation,
            reference_chromophores=config.phantoms.tissue.nominal_background(),
            wavelengths_nm=config.wavelengths_nm,
            active=active,
            **bounds,
        )

    def chromophores(self, targets):
        """(B, 3, H, W) normalised images → (B, 3, N) bounded nodal HbO, Hb, water."""
        images = self.normalisation.images(targets)
        images = jnp.clip(images, self.lower[:, None, None], self.upper[:, None, None])
        return self.interpolation.image_to_nodes(images)

    def signals(self, targets):
        """(B, 3, H, W) normalised images → (B, L, S, K) normalised signals they would produce,
        referenced to the physics mesh's own reference phantom."""
        nodes = self.chromophores(targets)
        ln_amplitude = jax.vmap(lambda c: self.model(c, *self.scatter))(nodes.astype(targets.dtype))
        return self.normalisation.signals(ln_amplitude)

    def __call__(self, targets, signals):
        """Arguments:
            targets: (B, 3, H, W) predicted normalised images.
            signals: (B, L, S, K) measured normalised signals.

        Returns:
            Scalar mean square signal mismatch over the active measurements.
        """
        if signals.shape[1:] != tuple(self.normalisation.reference.shape) or signals.shape[0] != targets.shape[0]:
            raise ValueError(f"signals must be (B, *{tuple(self.normalisation.reference.shape)}), got {signals.shape}")
        mismatch = jnp.square(self.signals(targets) - signals)
        active = jnp.asarray(self.active, mismatch.dtype)
        return jnp.sum(mismatch * active) / (jnp.sum(active) * signals.shape[0] * signals.shape[1])
