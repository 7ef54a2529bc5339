"""Spectral Gauss-Newton: chromophore (and scatter) coefficients from ln amplitudes — and, in
the frequency domain, phases — at all wavelengths.

Unknowns are u (3, K): HbO, Hb and water coefficients of a `ReconstructionBasis`, in units of
a per-chromophore scale s (the homogeneous background), so the nodal chromophores are
c = B(s·u). Each iteration linearises the forward model F at uₖ (exact adjoint Jacobian) and
takes the iteratively regularised Gauss-Newton step (Bakushinsky)

    δ = argmin ‖W(r − Jδ)‖² + λₖ Σ_c α_c (uₖ + δ − u₀)_cᵀ R (uₖ + δ − u₀)_c,   r = y − F(uₖ),

with W the measurement mask and the damping schedule λₖ = h̄·ρᵏ: h̄ the mean diagonal of JᵀJ
at u₀ (scale-free weights α), ρ = 10^(−1/4) by default (NIRFAST's decrement). The new
iterate is clipped to physical bounds. It is kept only if the mean-square misfit falls;
iterations stop when it rises (the previous iterate is returned) or improves by less than
`tolerance` (relative), or after `iterations` steps. So the misfit history is monotone.
Why it stopped is the result's `status` (`GaussNewtonStatus`); a step that is not finite or an
invalid input (non-finite data, a weight ≤ 0) is a failure, never a silent homogeneous fit.

J is never materialised over (chromophore, node): the chromophore Jacobian is the µa
Jacobian times the extinction, so with P_l = (∂F_l/∂µa)·B the normal matrix is
Σ_l (ẽ_l ẽ_lᵀ) ⊗ P_lᵀP_l with ẽ_l = s·E_l — 3K×3K, solved by Cholesky.

Mixed precision (`factor_in_float32`, the default). In a float64 run the damped normal matrix
A = N + λₖ·(α ⊗ R) is assembled and Cholesky-factorised in float32 (half the time of both on a
CPU), and the step is then refined against the float64 system: δ ← δ + A₃₂⁻¹(b − A δ), with A δ
applied matrix-free from the float64 P_l, `REFINEMENT_STEPS` times. Each refinement shrinks the
error by about κ·ε₃₂, κ the condition number of A scaled to a unit diagonal (Cholesky's
accuracy depends on that scaled κ): measured on the `small` study's DRI systems (8 phantoms,
104 systems), median 3.8 × 10³ and at most 7.3 × 10⁴ (≤ 4.4 × 10⁻³ a step). Two refinements
gave DRI images identical to the float64 factorisation's in float32 on 32 test phantoms, and
DRI 12 % faster (docs/benchmarks.md; each refinement costs two triangular solves, which a CPU
runs memory-bound, so more do not pay); tests/test_recon.py checks the agreement. A step
whose refined residual stays above `SOLVE_TOLERANCE` (a system far worse conditioned) is not
taken: the run stops with `GaussNewtonStatus.INACCURATE_SOLVE`, a failure, never a silently
inaccurate step. Scatter fits, unrolled (differentiated) runs and the homogeneous fit always
factorise in float64. The condition numbers above are DRI's; Tikhonov, soft-prior, refinement
and frequency-domain chromophore fits use the same path, guarded by that check.

With a nodal `offset` c₀ (e.g. a network's output), the unknowns are a correction:
c = c₀ + B(s·u), started and anchored at u₀ = 0, so the prior is centred on c₀ and the
basis only has to carry what c₀ gets wrong; the chromophores are then clipped to the bounds
node by node instead of u.

Optionally (`fit_offsets`) a per-wavelength offset of ln A (unknown source power × detector
gain; and of the phase, an unknown delay) is eliminated by variable projection: residuals and
Jacobian rows lose their per-wavelength mean.

Frequency-domain data. With a frequency-domain model the data are the pair (ln A, phase): the
rows of both enter one least-squares problem, phase rows weighted by `phase_weight`
(σ(ln A)/σ(phase), radians) and phase residuals wrapped to [−π, π).

Scatter unknowns (`fit_scatter`). The scattering amplitude a and power b of
µs' = a·(λ/1000 nm)^(−b) become two more unknowns per basis coefficient, as ln a (positive by
construction, and relative like the scaled chromophores) and b. With Q_l = (∂F_l/∂µs')·diag(µs'_l)·B,
∂F_l/∂(ln a) = Q_l and ∂F_l/∂b = −ln(λ_l/1000 nm)·Q_l, so every unknown enters at wavelength l
as a multiple of P_l or Q_l: the normal matrix is Σ_l Σ_{t,t'} f_lt f_lt'ᵀ ⊗ X_tᵀX_t' with
X = (P_l, Q_l) and factors f (ẽ_l for the chromophores; 1 and −ln(λ_l/1000 nm) for ln a and b).
CW ln A alone barely separates µa from µs' (a scatter change is read as absorption); the phase
does, so fit scatter with frequency-domain data.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from .._full_precision import einsum, matmul
from ..physics import SpectralForwardModel
from ._basis import ReconstructionBasis

DEFAULT_LOWER = (0.0, 0.0, 0.0)
"""Lower bounds of HbO (µM), Hb (µM), water (%)."""
DEFAULT_UPPER = (1000.0, 1000.0, 100.0)
"""Upper bounds of HbO (µM), Hb (µM), water (%)."""
DEFAULT_SCATTER_LOWER = (0.05, 0.0)
"""Lower bounds of the scattering amplitude a (mm⁻¹) and power b."""
DEFAULT_SCATTER_UPPER = (10.0, 4.0)
"""Upper bounds of the scattering amplitude a (mm⁻¹) and power b."""
REFINEMENT_STEPS = 2
"""Refinements of a step factorised in float32 against the float64 system (module docstring)."""
SOLVE_TOLERANCE = 1e-4
"""Largest relative residual ‖b − Aδ‖/‖b‖ of a refined float32-factorised step; above it the run
stops with `GaussNewtonStatus.INACCURATE_SOLVE` (a step 10⁻⁴ off the exact one would still
descend, but such a system is ≈ 10× worse conditioned than any the study met)."""


class GaussNewtonStatus(enum.IntEnum):
    """Why Gauss-Newton stopped (`GaussNewtonResult.status`); `failed` for the last three."""

    CONVERGED = 0
    """The relative misfit improvement fell below `tolerance`."""
    MAX_ITERATIONS = 1
    """Every one of `iterations` steps was accepted."""
    MISFIT_ROSE = 2
    """The next step raised the misfit: the previous iterate is returned (the usual stop)."""
    NOT_FINITE = 3
    """A step gave NaN or infinite values (e.g. a singular system): the last finite iterate is returned."""
    INVALID_INPUT = 4
    """Non-finite data or starting misfit, or a weight that is not finite and > 0: no step taken."""
    INACCURATE_SOLVE = 5
    """The step's system, factorised in float32 (`GaussNewton.factor_in_float32`), was too ill-conditioned
    for the refinement to reach `SOLVE_TOLERANCE`: the last iterate is returned."""

    @property
    def failed(self) -> bool:
        return self >= GaussNewtonStatus.NOT_FINITE

    def describe(self) -> str:
        """A sentence for messages."""
        return {
            GaussNewtonStatus.CONVERGED: "converged",
            GaussNewtonStatus.MAX_ITERATIONS: "used every iteration",
            GaussNewtonStatus.MISFIT_ROSE: "stopped where the misfit would rise",
            GaussNewtonStatus.NOT_FINITE: "failed: a step gave NaN or infinite values",
            GaussNewtonStatus.INVALID_INPUT: "failed: non-finite data or a regularisation weight that is not finite and > 0",
            GaussNewtonStatus.INACCURATE_SOLVE: "failed: the Gauss-Newton system was too ill-conditioned for its float32 "
                                                "factorisation (use GaussNewton(factor_in_float32=False), or "
                                                "nirst reconstruct --factorise-in-float64)",
        }[self]


def _concrete(value):
    """`value` as a NumPy array, or None while it is being traced."""
    try:
        return np.asarray(value)
    except jax.errors.TracerArrayConversionError:
        return None


def check_weight(weight) -> None:
    """ValueError naming the value unless the regularisation weight α is finite and > 0 (skipped under tracing)."""
    value = _concrete(weight)
    if value is not None and not (np.isfinite(value).all() and (value > 0).all()):
        raise ValueError(f"the regularisation weight α must be finite and > 0, got {value.tolist()!r}")


class GaussNewtonResult(NamedTuple):
    """What a Gauss-Newton run returns.

    Attributes:
        coefficients: (3, K) HbO (µM), Hb (µM), water (%) per basis coefficient.
        misfit: (iterations + 1,) mean-square misfit (ln A, and weighted phase) of the initial
            guess and of each accepted iterate (NaN for rejected steps and after the stop):
            decreasing.
        accepted: (iterations,) whether each step was kept.
        steps: number of accepted steps.
        offsets: (L,) fitted per-wavelength ln A offsets ((L, 2) ln A and phase in the
            frequency domain; zeros unless `fit_offsets`).
        status: int `GaussNewtonStatus`: why it stopped (≥ NOT_FINITE: it failed).
        scatter: (2, K) scattering amplitude a (mm⁻¹) and power b per coefficient with
            `fit_scatter`, else None.
    """

    coefficients: jnp.ndarray
    misfit: jnp.ndarray
    accepted: jnp.ndarray
    steps: jnp.ndarray
    offsets: jnp.ndarray
    status: jnp.ndarray
    scatter: jnp.ndarray | None = None


class _State(NamedTuple):
    k: jnp.ndarray
    u: jnp.ndarray
    residual: jnp.ndarray
    projected: jnp.ndarray  # (L, T, M', K): ∂F/∂µa·B (and ∂F/∂ln µs'·B), masked, weighted, offset-projected
    misfit: jnp.ndarray
    offsets: jnp.ndarray  # (L, D) masked mean residual per wavelength and data type
    done: jnp.ndarray
    history: jnp.ndarray
    accepted: jnp.ndarray
    status: jnp.ndarray


def wrap_phase(difference):
    """A phase difference wrapped to [−π, π) (radians)."""
    return jnp.mod(difference + jnp.pi, 2 * jnp.pi) - jnp.pi


def stacked_measurements(model: SpectralForwardModel, data, name: str = "data") -> jnp.ndarray:
    """Measurements as one (L, D, S, K) array: D = 1 (ln A) for a CW model, 2 (ln A, phase) in
    the frequency domain; ValueError naming the problem when `data` does not fit `model`."""
    if model.frequency_hz == 0:
        if isinstance(data, (tuple, list)):
            raise ValueError(f"{name} holds {len(data)} arrays (ln A, phase?) but the model is continuous-wave; "
                             "give (L, S, K) ln A, or a frequency-domain model for phase data")
        parts = (data,)
    else:
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise ValueError(f"the model is frequency-domain ({model.frequency_hz:g} Hz): {name} must be the pair "
                             "(ln A, phase), each (L, S, K); phase is never dropped silently")
        parts = tuple(data)
    arrays = [jnp.asarray(part) for part in parts]
    labels = ("",) if len(arrays) == 1 else (" ln A", " phase")
    for label, array in zip(labels, arrays):
        if array.shape != model.data_shape:
            raise ValueError(f"{name}{label} must have shape {model.data_shape} (wavelength, source, detector), got {array.shape}")
    return jnp.stack(arrays, axis=1)


class GaussNewton(eqx.Module):
    """Settings of the spectral Gauss-Newton solver (see the module docstring).

    Attributes:
        iterations: most Gauss-Newton steps.
        tolerance: stop when the relative misfit improvement falls below this.
        decay: damping decrement ρ of λₖ = h̄·ρᵏ.
        lower, upper: bounds of HbO (µM), Hb (µM), water (%).
        fit_offsets: eliminate a per-wavelength ln A (and phase) offset (for uncalibrated data).
        unrolled: run all `iterations` in a `lax.scan` (masking steps after the stop), which
            reverse-mode autodiff can differentiate; otherwise a `while_loop` that exits early.
        fit_scatter: also reconstruct the scattering amplitude a and power b (module docstring).
        scatter_lower, scatter_upper: bounds of a (mm⁻¹) and b when `fit_scatter`.
        phase_weight: weight of phase residuals (radians) against ln A residuals in the
            frequency domain: σ(ln A)/σ(phase) of the data's noise.
        factor_in_float32: in a float64 run, factorise each damped normal matrix in float32
            and refine the step against the float64 system (module docstring); False
            factorises in float64. No effect in float32 runs, with `fit_scatter` (those
            systems are ill-conditioned: CW ln A barely separates µa from µs') and when
            `unrolled` (differentiated).
    """

    iterations: int = eqx.field(static=True, default=10)
    tolerance: float = eqx.field(static=True, default=0.01)
    decay: float = eqx.field(static=True, default=10**-0.25)
    lower: tuple[float, float, float] = eqx.field(static=True, default=DEFAULT_LOWER)
    upper: tuple[float, float, float] = eqx.field(static=True, default=DEFAULT_UPPER)
    fit_offsets: bool = eqx.field(static=True, default=False)
    unrolled: bool = eqx.field(static=True, default=False)
    fit_scatter: bool = eqx.field(static=True, default=False)
    scatter_lower: tuple[float, float] = eqx.field(static=True, default=DEFAULT_SCATTER_LOWER)
    scatter_upper: tuple[float, float] = eqx.field(static=True, default=DEFAULT_SCATTER_UPPER)
    phase_weight: float = eqx.field(static=True, default=1.0)
    factor_in_float32: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if int(self.iterations) != self.iterations or self.iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {self.iterations!r}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance!r}")
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {self.decay!r}")
        if len(self.lower) != 3 or len(self.upper) != 3 or any(
            not lo < hi for lo, hi in zip(self.lower, self.upper)
        ):
            raise ValueError(f"bounds need three (lower < upper) pairs, got {self.lower}, {self.upper}")
        if len(self.scatter_lower) != 2 or len(self.scatter_upper) != 2 or any(
            not lo < hi for lo, hi in zip(self.scatter_lower, self.scatter_upper)
        ) or not self.scatter_lower[0] > 0:
            raise ValueError(
                f"scatter bounds need two (lower < upper) pairs with amplitude > 0, got {self.scatter_lower}, {self.scatter_upper}"
            )
        if not (np.isfinite(self.phase_weight) and self.phase_weight > 0):
            raise ValueError(f"phase_weight must be finite and > 0, got {self.phase_weight!r}")

    def __call__(
        self,
        model: SpectralForwardModel,
        basis: ReconstructionBasis,
        data,
        regulariser,
        weight,
        initial,
        scale,
        scatter_amplitude=None,
        scatter_power=None,
        offset=None,
    ) -> GaussNewtonResult:
        """Reconstruct.

        Arguments:
            model: forward model (CW, or frequency domain for ln A and phase).
            basis: the reconstruction basis (K coefficients).
            data: (L, S, K_slots) measured ln A, or the pair (ln A, phase) for a
                frequency-domain model (inactive measurements of the layout are ignored).
            regulariser: (K, K) symmetric positive definite R.
            weight: α, scalar or (3,) per chromophore ((5,) with `fit_scatter`: then a and b last).
            initial: (3, K) or (3,) starting (and prior) chromophores u₀·s.
            scale: (3,) positive per-chromophore scale s.
            scatter_amplitude, scatter_power: the scattering law (default: the model's): known
                (scalars or (N,) nodal), or with `fit_scatter` the start and prior of a and b
                (scalars or (K,) per coefficient).
            offset: (3, N) nodal chromophores the basis corrects (module docstring), or None.

        Returns:
            `GaussNewtonResult` (with `offset`, `coefficients` are the correction).
        """
        check_weight(weight)  # here, while the value is concrete: it names a bad α
        # Numbers become arrays so that they are traced, not baked into the compiled program.
        numbers = [None if value is None else jnp.asarray(value)
                   for value in (weight, initial, scale, scatter_amplitude, scatter_power)]
        return self._solve(model, basis, data, regulariser, *numbers, offset)

    @eqx.filter_jit
    def _solve(self, model, basis, data, regulariser, weight, initial, scale, scatter_amplitude, scatter_power, offset):
        """`__call__`, compiled once per structure of its arguments: models, bases and data of
        the same shapes and static settings share one program (equinox's filter_jit)."""
        n_basis = basis.n_coefficients
        if basis.n_nodes != model.fem.n_nodes:
            raise ValueError(f"basis is for {basis.n_nodes} nodes, the model's mesh has {model.fem.n_nodes}")
        data = stacked_measurements(model, data)  # (L, D, S, K)
        dtype = jnp.result_type(data.dtype, float)
        regulariser = jnp.asarray(regulariser, dtype)
        if regulariser.shape != (n_basis, n_basis):
            raise ValueError(f"regulariser must be ({n_basis}, {n_basis}), got {regulariser.shape}")
        scale = jnp.asarray(scale, dtype)
        if scale.shape != (3,):
            raise ValueError(f"scale must have shape (3,), got {scale.shape}")
        initial = jnp.broadcast_to(jnp.asarray(initial, dtype).reshape(3, -1), (3, n_basis))
        n_unknowns = 5 if self.fit_scatter else 3
        weight = jnp.asarray(weight, dtype)
        if weight.shape not in ((), (3,), (n_unknowns,)):
            raise ValueError(f"weight must be a scalar or have shape ({n_unknowns},), got {weight.shape}")
        if weight.shape == (3,) and self.fit_scatter:
            raise ValueError("with fit_scatter the weight is a scalar or (5,): HbO, Hb, water, a, b")
        weight = jnp.broadcast_to(weight, (n_unknowns,))

        n_wavelengths, n_types = data.shape[:2]
        per_type = int(np.prod(model.data_shape[1:]))
        active = jnp.broadcast_to(jnp.asarray(model.layout.active), model.layout.shape).reshape(-1)
        mask = jnp.broadcast_to(active, (n_wavelengths, n_types, per_type)).astype(dtype)  # (L, D, M)
        type_weight = jnp.asarray([1.0, self.phase_weight][:n_types], dtype)[None, :, None]
        y = jnp.where(mask > 0, data.reshape(n_wavelengths, n_types, per_type), 0.0)
        count = mask.sum()
        per_group = mask.sum(2, keepdims=True)  # (L, D, 1)
        extinction = jnp.asarray(model.extinction, dtype) * scale  # ẽ_l = s·E_l, (L, 3)
        factors = extinction[..., None]  # (L, U, T): how each unknown enters through ∂F/∂µa (and ∂F/∂ln µs')
        if self.fit_scatter:
            log_wavelength = -jnp.log(jnp.asarray(model.wavelengths_nm, dtype) / 1000.0)  # ∂ln µs'/∂b
            factors = jnp.zeros((n_wavelengths, 5, 2), dtype)
            factors = factors.at[:, :3, 0].set(extinction).at[:, 3, 1].set(1.0).at[:, 4, 1].set(log_wavelength)
        lower = jnp.asarray(self.lower, dtype) / scale
        upper = jnp.asarray(self.upper, dtype) / scale
        u0 = initial / scale[:, None]
        if offset is not None:
            offset = jnp.asarray(offset, dtype)
            if offset.shape != (3, model.fem.n_nodes):
                raise ValueError(f"offset must have shape (3, {model.fem.n_nodes}), got {offset.shape}")
            lower, upper = jnp.full(3, -jnp.inf, dtype), jnp.full(3, jnp.inf, dtype)  # bounds act on the nodes
        if self.fit_scatter:
            start = [model.scatter_amplitude if scatter_amplitude is None else scatter_amplitude,
                     model.scatter_power if scatter_power is None else scatter_power]
            for name, value in zip(("scatter_amplitude", "scatter_power"), start):
                if jnp.shape(value) not in ((), (n_basis,)):
                    raise ValueError(f"with fit_scatter, {name} (the start) must be a scalar or ({n_basis},), got {jnp.shape(value)}")
            u0 = jnp.concatenate([u0, jnp.stack([jnp.broadcast_to(jnp.log(jnp.asarray(start[0], dtype)), (n_basis,)),
                                                 jnp.broadcast_to(jnp.asarray(start[1], dtype), (n_basis,))])])
            lower = jnp.concatenate([lower, jnp.asarray([np.log(self.scatter_lower[0]), self.scatter_lower[1]], dtype)])
            upper = jnp.concatenate([upper, jnp.asarray([np.log(self.scatter_upper[0]), self.scatter_upper[1]], dtype)])

        def nodal(u):
            """(chromophores (3, N), scatter amplitude, scatter power) of the unknowns u."""
            chromophores = basis.nodes_from(u[:3] * scale[:, None])
            if offset is not None:
                bounds = [jnp.asarray(b, dtype)[:, None] for b in (self.lower, self.upper)]
                chromophores = jnp.clip(offset + chromophores, *bounds)
            if not self.fit_scatter:
                return chromophores, scatter_amplitude, scatter_power
            return chromophores, jnp.exp(basis.nodes_from(u[3])), basis.nodes_from(u[4])

        def project(rows):
            """(L, D, M, X) rows masked and, with offsets, minus each (wavelength, type)'s masked
            mean; then weighted by data type and flattened to (L, D·M, X); and the mean."""
            weights = mask[..., None]
            rows = rows * weights
            mean = rows.sum(2, keepdims=True) / per_group[..., None]
            rows = (rows - mean) * weights if self.fit_offsets else rows
            return (rows * type_weight[..., None]).reshape(n_wavelengths, n_types * per_type, -1), mean

        def residual_of(predicted):
            difference = y - jnp.stack(predicted if n_types == 2 else (predicted,), 1).reshape(y.shape)
            phase = wrap_phase(difference[:, 1:])  # phase residuals wrapped
            if self.fit_offsets:
                # An unknown delay may sit anywhere on the circle: wrap around the circular mean,
                # so the (linear) mean that variable projection removes is that delay.
                centre = jnp.angle(jnp.sum(mask[:, 1:] * jnp.exp(1j * phase), axis=2, keepdims=True))
                phase = wrap_phase(phase - centre) + centre
            return difference.at[:, 1:].set(phase)

        def linearise(u):
            chromophores, amplitude, power = nodal(u)
            mua, musp = model.optical_properties(chromophores, amplitude, power)
            if self.fit_scatter:
                predicted, (d_mua, d_musp) = model.linearise_optics(mua, musp)
                jacobians = (d_mua, d_musp * musp.reshape((n_wavelengths,) + (1,) * (d_musp.ndim - 2) + (-1,)))  # ∂F/∂ln µs'
            else:
                predicted, d_mua = model.linearise_absorption(mua, musp)
                jacobians = (d_mua,)
            residual, offsets = project(residual_of(predicted)[..., None])
            projected = [
                project(basis.apply_transpose(j.reshape(n_wavelengths, n_types, per_type, model.fem.n_nodes)))[0]
                for j in jacobians
            ]
            return residual[..., 0], jnp.stack(projected, 1), (residual**2).sum() / count, offsets[:, :, 0, 0]

        def normal_matrix(projected):
            gram = einsum("ltmk,lsmj->ltskj", projected, projected)
            f = factors.astype(projected.dtype)  # in the precision of `projected` (float32 when factorised so)
            return einsum("lut,lvs,ltskj->ukvj", f, f, gram).reshape(n_unknowns * n_basis, -1)

        def normal_product(projected, v):
            """N·v (v: (U, K)) without N: Jᵀ(J v), J's rows Σ_t f_lut X_lt (every type t)."""
            rows = einsum("lvs,lsmj,vj->lm", factors, projected, v)
            return einsum("lut,ltmk,lm->uk", factors, projected, rows)

        def damped_solve(projected, damping, rhs):
            """(N + damping·penalty)⁻¹ rhs, factorised in float32 and refined in float64
            when `factor_in_float32` applies (module docstring), else in the working precision."""
            # Not for scatter fits (ill-conditioned) nor unrolled runs (differentiated: a float32
            # breakdown in a masked step would put NaN into the gradient).
            mixed = self.factor_in_float32 and not (self.fit_scatter or self.unrolled) and dtype == jnp.float64
            low = jnp.float32 if mixed else dtype
            system = normal_matrix(projected.astype(low)) + (damping * penalty).astype(low)
            factor = jsl.cho_factor(system, lower=True)
            solve = lambda b: jsl.cho_solve(factor, b.astype(low)).astype(dtype)  # noqa: E731
            remainder = lambda d: rhs - normal_product(projected, d.reshape(n_unknowns, n_basis)).reshape(-1) - damping * matmul(penalty, d)  # noqa: E731
            delta = solve(rhs)
            if not mixed:
                return delta, jnp.asarray(True)
            for _ in range(REFINEMENT_STEPS):
                delta = delta + solve(remainder(delta))
            error = jnp.linalg.norm(remainder(delta))
            # A NaN from finite inputs is the float32 factorisation breaking down; from non-finite
            # inputs (e.g. a NaN in the MRI) it is reported as NOT_FINITE.
            inputs_finite = penalty_finite & jnp.isfinite(rhs).all() & jnp.isfinite(projected).all()
            accurate = ~inputs_finite | (error <= SOLVE_TOLERANCE * jnp.linalg.norm(rhs))
            return delta, accurate

        def normal_trace(projected):
            # tr N = Σ_l Σ_u f_luᵀ C_l f_lu with C_l,ts = tr(X_ltᵀX_ls): no UK×UK product for its diagonal.
            cross = einsum("ltmk,lsmk->lts", projected, projected)
            return einsum("lut,lus,lts->", factors, factors, cross)

        residual, projected, misfit, offsets = linearise(u0)
        mean_curvature = normal_trace(projected) / (n_unknowns * n_basis)
        penalty = jnp.kron(jnp.diag(weight), regulariser)
        penalty_finite = jnp.isfinite(penalty).all()

        def step(state: _State) -> _State:
            damping = mean_curvature * self.decay ** state.k.astype(dtype)
            gradient = einsum("lut,ltmk,lm->uk", factors, state.projected, state.residual).reshape(-1)
            prior = matmul(penalty, (state.u - u0).reshape(-1))
            delta, accurate = damped_solve(state.projected, damping, gradient - damping * prior)
            u_new = jnp.clip(state.u + delta.reshape(n_unknowns, n_basis), lower[:, None], upper[:, None])
            residual_new, projected_new, misfit_new, offsets_new = linearise(u_new)
            better = (misfit_new < state.misfit) & accurate  # False for NaN
            accept = better & ~state.done
            gain = (state.misfit - misfit_new) / state.misfit
            done = state.done | ~better | (gain < self.tolerance)
            finite = jnp.isfinite(misfit_new) & jnp.isfinite(u_new).all()
            rejected = jnp.where(finite, GaussNewtonStatus.MISFIT_ROSE, GaussNewtonStatus.NOT_FINITE)
            reason = jnp.where(better, GaussNewtonStatus.CONVERGED,
                               jnp.where(accurate, rejected, GaussNewtonStatus.INACCURATE_SOLVE))
            keep = lambda new, old: jnp.where(accept, new, old)  # noqa: E731
            return _State(
                k=state.k + 1,
                u=keep(u_new, state.u),
                residual=keep(residual_new, state.residual),
                projected=keep(projected_new, state.projected),
                misfit=keep(misfit_new, state.misfit),
                offsets=keep(offsets_new, state.offsets),
                done=done,
                history=state.history.at[state.k + 1].set(jnp.where(accept, misfit_new, jnp.nan)),
                accepted=state.accepted.at[state.k].set(accept),
                status=jnp.where(state.done | ~done, state.status, reason),
            )

        history = jnp.full(self.iterations + 1, jnp.nan, dtype).at[0].set(misfit)
        state = _State(
            k=jnp.asarray(0),
            u=u0,
            residual=residual,
            projected=projected,
            misfit=misfit,
            offsets=offsets,
            done=jnp.asarray(False),
            history=history,
            accepted=jnp.zeros(self.iterations, bool),
            status=jnp.asarray(GaussNewtonStatus.MAX_ITERATIONS),
        )
        # Invalid input under tracing (concrete values were checked above): no step is taken.
        valid = jnp.isfinite(misfit) & jnp.isfinite(weight).all() & (weight > 0).all()
        state = state._replace(done=~valid, status=jnp.where(valid, state.status, GaussNewtonStatus.INVALID_INPUT))
        if self.unrolled:
            state, _ = jax.lax.scan(lambda s, _: (step(s), None), state, None, length=self.iterations)
        else:
            state = jax.lax.while_loop(lambda s: (s.k < self.iterations) & ~s.done, step, state)
        offsets = state.offsets if self.fit_offsets else jnp.zeros((n_wavelengths, n_types), dtype)
        return GaussNewtonResult(
            coefficients=state.u[:3] * scale[:, None],
            misfit=state.history,
            accepted=state.accepted,
            steps=state.accepted.sum(),
            offsets=offsets[:, 0] if n_types == 1 else offsets,
            status=state.status,
            scatter=jnp.stack([jnp.exp(state.u[3]), state.u[4]]) if self.fit_scatter else None,
        )
