"""Spectral Gauss-Newton: chromophore coefficients from CW ln amplitudes at all wavelengths.

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

With a nodal `offset` c₀ (e.g. a network's output), the unknowns are a correction:
c = c₀ + B(s·u), started and anchored at u₀ = 0, so the prior is centred on c₀ and the
basis only has to carry what c₀ gets wrong; the chromophores are then clipped to the bounds
node by node instead of u.

Optionally (`fit_offsets`) a per-wavelength offset of ln A (unknown source power × detector
gain) is eliminated by variable projection: residuals and Jacobian rows lose their
per-wavelength mean.
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


class GaussNewtonStatus(enum.IntEnum):
    """Why Gauss-Newton stopped (`GaussNewtonResult.status`); `failed` for the last two."""

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
        misfit: (iterations + 1,) mean-square ln A misfit of the initial guess and of each
            accepted iterate (NaN for rejected steps and after the stop): decreasing.
        accepted: (iterations,) whether each step was kept.
        steps: number of accepted steps.
        offsets: (L,) fitted per-wavelength ln A offsets (zeros unless `fit_offsets`).
        status: int `GaussNewtonStatus`: why it stopped (≥ NOT_FINITE: it failed).
    """

    coefficients: jnp.ndarray
    misfit: jnp.ndarray
    accepted: jnp.ndarray
    steps: jnp.ndarray
    offsets: jnp.ndarray
    status: jnp.ndarray


class _State(NamedTuple):
    k: jnp.ndarray
    u: jnp.ndarray
    residual: jnp.ndarray
    projected: jnp.ndarray  # Pₗ = ∂F/∂µa·B, (L, M, K), masked and offset-projected
    misfit: jnp.ndarray
    offsets: jnp.ndarray  # (L,) masked mean residual per wavelength
    done: jnp.ndarray
    history: jnp.ndarray
    accepted: jnp.ndarray
    status: jnp.ndarray


class GaussNewton(eqx.Module):
    """Settings of the spectral Gauss-Newton solver (see the module docstring).

    Attributes:
        iterations: most Gauss-Newton steps.
        tolerance: stop when the relative misfit improvement falls below this.
        decay: damping decrement ρ of λₖ = h̄·ρᵏ.
        lower, upper: bounds of HbO (µM), Hb (µM), water (%).
        fit_offsets: eliminate a per-wavelength ln A offset (for uncalibrated data).
        unrolled: run all `iterations` in a `lax.scan` (masking steps after the stop), which
            reverse-mode autodiff can differentiate; otherwise a `while_loop` that exits early.
    """

    iterations: int = eqx.field(static=True, default=10)
    tolerance: float = eqx.field(static=True, default=0.01)
    decay: float = eqx.field(static=True, default=10**-0.25)
    lower: tuple[float, float, float] = eqx.field(static=True, default=DEFAULT_LOWER)
    upper: tuple[float, float, float] = eqx.field(static=True, default=DEFAULT_UPPER)
    fit_offsets: bool = eqx.field(static=True, default=False)
    unrolled: bool = eqx.field(static=True, default=False)

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
            model: CW forward model.
            basis: the reconstruction basis (K coefficients).
            data: (L, S, K_slots) measured ln A (inactive measurements of the layout are ignored).
            regulariser: (K, K) symmetric positive definite R.
            weight: α, scalar or (3,) per chromophore.
            initial: (3, K) or (3,) starting (and prior) chromophores u₀·s.
            scale: (3,) positive per-chromophore scale s.
            scatter_amplitude, scatter_power: the (known) scattering law (default: the model's).
            offset: (3, N) nodal chromophores the basis corrects (module docstring), or None.

        Returns:
            `GaussNewtonResult` (with `offset`, `coefficients` are the correction).
        """
        if model.frequency_hz != 0:
            raise ValueError("Gauss-Newton reconstruction uses CW ln amplitude; give a CW model")
        n_basis = basis.n_coefficients
        if basis.n_nodes != model.fem.n_nodes:
            raise ValueError(f"basis is for {basis.n_nodes} nodes, the model's mesh has {model.fem.n_nodes}")
        data = jnp.asarray(data)
        if data.shape != model.data_shape:
            raise ValueError(f"data must have shape {model.data_shape} (wavelength, source, detector), got {data.shape}")
        dtype = jnp.result_type(data.dtype, float)
        regulariser = jnp.asarray(regulariser, dtype)
        if regulariser.shape != (n_basis, n_basis):
            raise ValueError(f"regulariser must be ({n_basis}, {n_basis}), got {regulariser.shape}")
        scale = jnp.asarray(scale, dtype)
        if scale.shape != (3,):
            raise ValueError(f"scale must have shape (3,), got {scale.shape}")
        initial = jnp.broadcast_to(jnp.asarray(initial, dtype).reshape(3, -1), (3, n_basis))
        check_weight(weight)
        weight = jnp.broadcast_to(jnp.asarray(weight, dtype), (3,))

        n_wavelengths = model.n_wavelengths
        mask = jnp.broadcast_to(jnp.asarray(model.layout.active), model.data_shape).reshape(n_wavelengths, -1)
        mask = mask.astype(dtype)
        y = jnp.where(mask > 0, data.reshape(n_wavelengths, -1), 0.0)
        count = mask.sum()
        per_wavelength = mask.sum(1, keepdims=True)
        extinction = jnp.asarray(model.extinction, dtype) * scale  # ẽ_l = s·E_l, (L, 3)
        lower = jnp.asarray(self.lower, dtype) / scale
        upper = jnp.asarray(self.upper, dtype) / scale
        u0 = initial / scale[:, None]
        if offset is not None:
            offset = jnp.asarray(offset, dtype)
            if offset.shape != (3, model.fem.n_nodes):
                raise ValueError(f"offset must have shape (3, {model.fem.n_nodes}), got {offset.shape}")
            lower, upper = jnp.full(3, -jnp.inf, dtype), jnp.full(3, jnp.inf, dtype)  # bounds act on the nodes

        def nodal(u):
            chromophores = basis.nodes_from(u * scale[:, None])
            if offset is None:
                return chromophores
            bounds = [jnp.asarray(b, dtype)[:, None] for b in (self.lower, self.upper)]
            return jnp.clip(offset + chromophores, *bounds)

        weights = mask[..., None]

        def project(rows):
            """(L, M, X) rows masked and, with offsets, minus each wavelength's masked mean; and the mean."""
            rows = rows * weights
            mean = rows.sum(1, keepdims=True) / per_wavelength[..., None]
            return ((rows - mean) * weights if self.fit_offsets else rows), mean

        def linearise(u):
            chromophores = nodal(u)
            mua, musp = model.optical_properties(chromophores, scatter_amplitude, scatter_power)
            predicted, jacobian = model.linearise_absorption(mua, musp)
            residual, offsets = project((y - predicted.reshape(n_wavelengths, -1))[..., None])
            projected, _ = project(basis.apply_transpose(jacobian.reshape(n_wavelengths, -1, model.fem.n_nodes)))
            return residual[..., 0], projected, (residual**2).sum() / count, offsets[:, 0, 0]

        def normal_matrix(projected):
            gram = einsum("lmk,lmj->lkj", projected, projected)
            return einsum("lc,ld,lkj->ckdj", extinction, extinction, gram).reshape(3 * n_basis, 3 * n_basis)

        residual, projected, misfit, offsets = linearise(u0)
        mean_curvature = jnp.trace(normal_matrix(projected)) / (3 * n_basis)
        penalty = jnp.kron(jnp.diag(weight), regulariser)

        def step(state: _State) -> _State:
            damping = mean_curvature * self.decay ** state.k.astype(dtype)
            gradient = einsum("lc,lmk,lm->ck", extinction, state.projected, state.residual).reshape(-1)
            prior = matmul(penalty, (state.u - u0).reshape(-1))
            system = normal_matrix(state.projected) + damping * penalty
            delta = jsl.cho_solve(jsl.cho_factor(system, lower=True), gradient - damping * prior)
            u_new = jnp.clip(state.u + delta.reshape(3, n_basis), lower[:, None], upper[:, None])
            residual_new, projected_new, misfit_new, offsets_new = linearise(u_new)
            better = misfit_new < state.misfit  # False for NaN
            accept = better & ~state.done
            gain = (state.misfit - misfit_new) / state.misfit
            done = state.done | ~better | (gain < self.tolerance)
            finite = jnp.isfinite(misfit_new) & jnp.isfinite(u_new).all()
            rejected = jnp.where(finite, GaussNewtonStatus.MISFIT_ROSE, GaussNewtonStatus.NOT_FINITE)
            reason = jnp.where(better, GaussNewtonStatus.CONVERGED, rejected)
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
        return GaussNewtonResult(
            coefficients=state.u * scale[:, None],
            misfit=state.history,
            accepted=state.accepted,
            steps=state.accepted.sum(),
            offsets=state.offsets if self.fit_offsets else jnp.zeros(n_wavelengths, dtype),
            status=state.status,
        )

