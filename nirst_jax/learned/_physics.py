"""The physics an unrolled reconstruction network sees, in the networks' normalised units.

On a reconstruction mesh, for a normalised image t (`Normalisation.targets`: t = (c − mean_c)/
std_c per chromophore) and normalised measured signals s (`Normalisation.signals`):

    ŝ(t) = (F(c(t)) − F(c_ref) − mean_λ) / std_λ       c(t) = clip(std·t + mean), at the nodes
    r(t) = W (s − ŝ(t))                              W: the active measurements

F(c_ref) is the homogeneous reference phantom simulated on the reconstruction mesh, so ŝ is
referenced to its own mesh, as a measurement is: ŝ is the physics loss's re-simulation
(`PhysicsLoss.signals`, docs/training.md). From r it offers two directions on the image grid:

- the data-fit descent direction −∇_t ½‖r‖² = J_tᵀ r (exact: one adjoint solve per source);
- the MRI-guided Gauss-Newton (Levenberg-Marquardt) direction on a coarse pixel basis B,
  δ = B (AᵀA + λ P)⁻¹ Aᵀ r, P = I₃ ⊗ R_DRI, with A = ∂ŝ/∂u the Jacobian at the reference
  phantom (computed once, so a step costs one forward solve and a 3K×3K Cholesky
  factorisation) and R_DRI the DRI matrix of the phantom's MRI (`nirst_jax.recon.dri_matrix`).

With a Jacobian rank r (`create(..., jacobian_rank=r)`), A is replaced by its r leading
singular triplets, A_r = U S Vᵀ (computed once), and the direction is solved in r dimensions:
with R = C Cᵀ (a K×K Cholesky factor) and W = (I₃ ⊗ C)⁻¹ V S,

    δ = B (I₃ ⊗ C)⁻ᵀ W (WᵀW + λ I_r)⁻¹ Uᵀ r,

which is (A_rᵀA_r + λ P)⁻¹ A_rᵀ r exactly (the push-through identity). C, W and WᵀW depend on
the MRI only, so they are computed once per phantom (`low_rank_prior`); each iteration factorises
an r×r matrix. r = rank(A) gives the exact direction.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from .._full_precision import matmul
from ..mesh import Mesh
from ..recon import DEFAULT_WEIGHTS, ReconstructionBasis, dri_matrix
from ._physics_loss import PhysicsLoss

DEFAULT_BASIS_SIZE = 12
"""Pixel-basis points per side of the Gauss-Newton direction (≈ 130 coefficients on a disk)."""


class UnrolledPhysics(eqx.Module):
    """Residuals, data-fit gradients and DRI Gauss-Newton directions (module docstring).

    All methods act on one phantom; `jax.vmap` them over a batch.

    Attributes:
        physics_loss: the re-simulation ŝ(t) on the reconstruction mesh (forward model, grid
            interpolation, normalisation referenced to that mesh, active measurements, bounds,
            scattering): a `PhysicsLoss`.
        basis: the coarse pixel basis of the Gauss-Newton direction.
        sensitivity: (M, 3K) A = ∂ŝ/∂u at the reference, rows the (wavelength, source, slot)
            measurements (inactive rows zero), columns (chromophore, basis coefficient) in
            normalised units.
        normal: (3K, 3K) AᵀA.
        curvature: mean diagonal of AᵀA (the scale of the damping).
        homogeneous_sensitivity: (M, 3) the Jacobian of a homogeneous change (Σ over the basis,
            a partition of unity).
        reference: (3,) normalised reference chromophores (the homogeneous start's first guess).
        dri_weight: α of the DRI penalty (relative to `curvature`).
        left, right: (M, r) U and (3K, r) V S of the rank-r Jacobian (module docstring), or
            None: the exact direction.
    """

    physics_loss: PhysicsLoss
    basis: ReconstructionBasis
    sensitivity: jnp.ndarray
    normal: jnp.ndarray
    curvature: jnp.ndarray
    homogeneous_sensitivity: jnp.ndarray
    reference: jnp.ndarray
    dri_weight: float = eqx.field(static=True)
    left: jnp.ndarray | None = None
    right: jnp.ndarray | None = None

    @classmethod
    def create(
        cls,
        physics_loss: PhysicsLoss,
        mesh: Mesh,
        reference_chromophores,
        *,
        basis_size: int = DEFAULT_BASIS_SIZE,
        dri_weight: float = DEFAULT_WEIGHTS["dri"],
        jacobian_rank: int | None = None,
    ) -> "UnrolledPhysics":
        """Build the operators.

        Arguments:
            physics_loss: the re-simulation on the reconstruction mesh (`PhysicsLoss.create`).
            mesh: that mesh.
            reference_chromophores: (3,) HbO (µM), Hb (µM), water (%) of the reference phantom
                the signals are referenced to (where the Jacobian is taken).
            basis_size: pixel-basis points per side of the Gauss-Newton direction.
            dri_weight: α of the DRI penalty.
            jacobian_rank: r, the leading singular triplets of A the Gauss-Newton direction uses
                (module docstring; at most min(M, 3K)); None: the exact direction.

        Returns:
            The operators (float32).
        """
        if not (np.isfinite(dri_weight) and dri_weight > 0):
            raise ValueError(f"dri_weight must be > 0, got {dri_weight!r}")
        if jacobian_rank is not None and (isinstance(jacobian_rank, bool) or int(jacobian_rank) != jacobian_rank
                                          or jacobian_rank < 1):
            raise ValueError(f"jacobian_rank must be a positive integer or None, got {jacobian_rank!r}")
        jacobian_rank = None if jacobian_rank is None else int(jacobian_rank)
        if physics_loss.model.fem.n_nodes != mesh.n_nodes:
            raise ValueError(f"the physics loss has {physics_loss.model.fem.n_nodes} nodes, the mesh {mesh.n_nodes}")
        scatter = physics_loss.scatter
        model, normalisation = physics_loss.model, physics_loss.normalisation
        basis = ReconstructionBasis.pixels(mesh, basis_size)
        level = jnp.broadcast_to(jnp.asarray(reference_chromophores, float)[:, None], (3, mesh.n_nodes))
        _, jacobian = model.linearise_absorption(*model.optical_properties(level, *scatter))  # (L, S, K, N)
        n_wavelengths = model.n_wavelengths
        per_coefficient = np.asarray(basis.apply_transpose(jacobian.reshape(n_wavelengths, -1, mesh.n_nodes)))  # (L, M, K)
        # ∂ŝ/∂u: µa Jacobian × extinction × std_c (t units) / std_λ (normalised signals).
        chain = np.asarray(model.extinction) * np.asarray(normalisation.target_std)[None, :]
        chain = chain / np.asarray(normalisation.signal_std)[:, None]
        active = np.broadcast_to(np.asarray(physics_loss.active), model.data_shape).reshape(n_wavelengths, -1)
        sensitivity = per_coefficient[:, :, None, :] * chain[:, None, :, None] * active[:, :, None, None]  # (L, M, 3, K)
        sensitivity = sensitivity.reshape(-1, 3 * basis.n_coefficients).astype(np.float64)
        reference = (np.asarray(reference_chromophores, float) - np.asarray(normalisation.target_mean)) / np.asarray(normalisation.target_std)
        left = right = None
        if jacobian_rank is not None:
            if jacobian_rank > min(sensitivity.shape):
                raise ValueError(f"jacobian_rank {jacobian_rank} exceeds the Jacobian's {sensitivity.shape} "
                                 f"(at most {min(sensitivity.shape)})")
            u, singular, vt = np.linalg.svd(sensitivity, full_matrices=False)
            left = jnp.asarray(u[:, :jacobian_rank], jnp.float32)
            right = jnp.asarray(vt[:jacobian_rank].T * singular[:jacobian_rank], jnp.float32)
        return cls(
            physics_loss=physics_loss,
            basis=basis,
            sensitivity=jnp.asarray(sensitivity, jnp.float32),
            normal=jnp.asarray(sensitivity.T @ sensitivity, jnp.float32),
            curvature=jnp.asarray(np.mean(np.sum(sensitivity**2, axis=0)), jnp.float32),
            homogeneous_sensitivity=jnp.asarray(sensitivity.reshape(len(sensitivity), 3, -1).sum(-1), jnp.float32),
            reference=jnp.asarray(reference, jnp.float32),
            dri_weight=float(dri_weight),
            left=left,
            right=right,
        )

    @property
    def image_size(self) -> int:
        return self.physics_loss.interpolation.size

    @property
    def mask(self) -> np.ndarray:
        """(H, W) pixels inside the reconstruction mesh."""
        return np.asarray(self.physics_loss.interpolation.mask)

    def predicted(self, images):
        """(3, H, W) normalised images → (L, S, K) normalised signals ŝ they would produce."""
        return self.physics_loss.signals(images[None])[0]

    def residual(self, images, signals):
        """r = W (s − ŝ(t)), (L, S, K)."""
        return self._weights(signals) * (signals - self.predicted(images))

    def _weights(self, like):
        return jnp.asarray(self.physics_loss.active, like.dtype)

    def descent(self, images, signals):
        """(r, J_tᵀ r): the residual and the data-fit descent direction −∇_t ½‖r‖² (3, H, W)."""
        predicted, pullback = jax.vjp(self.predicted, images)
        residual = self._weights(signals) * (signals - predicted)
        (direction,) = pullback(residual)
        return residual, direction

    def linearised(self, residual, images):
        """`residual` (computed at `images`) with the derivative of the linearised model,
        ∂r/∂t ≈ −W·A·P (A the reference Jacobian, P the basis averages of the image):
        exact values, a cheap approximate backward pass through the physics."""
        def linear(t):
            coefficients = self.basis.average(self.physics_loss.interpolation.image_to_nodes(t))  # (3, K)
            return -self._weights(residual) * matmul(self.sensitivity.astype(t.dtype), coefficients.reshape(-1)).reshape(residual.shape)

        change = linear(images)
        return jax.lax.stop_gradient(residual) + change - jax.lax.stop_gradient(change)

    def regulariser(self, mri) -> jnp.ndarray:
        """(K, K) DRI matrix of an (H, W) MRI image (any grey-level scale)."""
        return dri_matrix(self.basis.average(self.physics_loss.interpolation.image_to_nodes(mri)))

    def gauss_newton(self, residual, regulariser, damping) -> jnp.ndarray:
        """The DRI Gauss-Newton direction B (AᵀA + λ·α·h̄·R)⁻¹ Aᵀ r on the image grid (3, H, W).

        Arguments:
            residual: (L, S, K) r.
            regulariser: (K, K) R (`regulariser`).
            damping: λ, relative (the k-th DRI step uses ρᵏ).
        """
        dtype = jnp.result_type(residual.dtype, jnp.float32)  # float64 inputs solve in float64
        return self.solve(residual, self.factorise(regulariser, damping, dtype))

    def factorise(self, regulariser, damping, dtype=jnp.float32) -> jnp.ndarray:
        """Lower Cholesky factor of AᵀA + λ·α·h̄·(I₃ ⊗ R), (3K, 3K): what `solve` reuses.

        Arguments:
            regulariser: (K, K) R (`regulariser`).
            damping: λ, relative.
            dtype: of the factorisation.
        """
        penalty = jnp.kron(jnp.eye(3, dtype=dtype), regulariser.astype(dtype))
        system = self.normal.astype(dtype) + self._penalty_weight(damping, dtype) * penalty
        return jsl.cho_factor(system, lower=True)[0]

    def solve(self, residual, factor) -> jnp.ndarray:
        """The Gauss-Newton direction of `residual` (L, S, K) with a `factorise` factor, on the
        image grid (3, H, W), in the factor's precision."""
        a = self.sensitivity.astype(factor.dtype)
        coefficients = jsl.cho_solve((factor, True), matmul(a.T, residual.reshape(-1).astype(factor.dtype)))
        return self._image(coefficients)

    @property
    def jacobian_rank(self) -> int | None:
        """r of the rank-r Gauss-Newton direction (None: exact)."""
        return None if self.right is None else self.right.shape[1]

    def low_rank_prior(self, regulariser, dtype=jnp.float32) -> tuple:
        """What the rank-r direction needs of one phantom's MRI, computed once (module docstring).

        Arguments:
            regulariser: (K, K) R (`regulariser`).
            dtype: of the computation.

        Returns:
            (C, W, WᵀW): (K, K) lower Cholesky factor of R, (3K, r), (r, r).
        """
        if self.right is None:
            raise ValueError("low_rank_prior needs a jacobian_rank (UnrolledPhysics.create)")
        factor = jnp.linalg.cholesky(regulariser.astype(dtype))
        k = self.basis.n_coefficients
        blocks = self.right.astype(dtype).reshape(3, k, -1)
        whitened = jax.vmap(lambda b: jsl.solve_triangular(factor, b, lower=True))(blocks).reshape(3 * k, -1)
        return factor, whitened, matmul(whitened.T, whitened)

    def low_rank_direction(self, residual, prior, damping) -> jnp.ndarray:
        """The rank-r Gauss-Newton direction (module docstring) on the image grid (3, H, W).

        Arguments:
            residual: (L, S, K) r.
            prior: `low_rank_prior` of the phantom's regulariser.
            damping: λ, relative (as `gauss_newton`).
        """
        factor, whitened, gram = prior
        dtype = factor.dtype
        shift = self._penalty_weight(damping, dtype)
        small = gram + shift * jnp.eye(gram.shape[0], dtype=dtype)
        projected = matmul(self.left.astype(dtype).T, residual.reshape(-1).astype(dtype))
        x = matmul(whitened, jsl.cho_solve((jnp.linalg.cholesky(small), True), projected))
        k = self.basis.n_coefficients
        coefficients = jax.vmap(lambda b: jsl.solve_triangular(factor, b, lower=True, trans="T"))(x.reshape(3, k))
        return self._image(coefficients.reshape(-1))

    def _penalty_weight(self, damping, dtype):
        """λ·α·h̄: the weight of the DRI penalty in a Gauss-Newton system with damping λ."""
        return damping * self.dri_weight * self.curvature.astype(dtype)

    def _image(self, coefficients) -> jnp.ndarray:
        """(3K,) basis coefficients → (3, H, W) image."""
        nodes = self.basis.nodes_from(coefficients.reshape(3, self.basis.n_coefficients))
        return self.physics_loss.interpolation.nodes_to_image(nodes)

    def homogeneous(self, signals, steps: int = 2) -> jnp.ndarray:
        """(3,) normalised homogeneous chromophores fitted to `signals` by Newton steps with the
        reference Jacobian (the first from the reference's known prediction, no solve)."""
        a = self.homogeneous_sensitivity
        normal = matmul(a.T, a)
        level = self.reference
        normalisation = self.physics_loss.normalisation
        reference_signals = normalisation.signals(normalisation.reference)
        size = self.image_size
        for step in range(steps):
            if step == 0:
                residual = self._weights(signals) * (signals - reference_signals)
            else:
                residual = self.residual(jnp.broadcast_to(level[:, None, None], (3, size, size)), signals)
            level = level + jnp.linalg.solve(normal, matmul(a.T, residual.reshape(-1)))
        return level
