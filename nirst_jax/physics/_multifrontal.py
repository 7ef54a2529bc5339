"""Numeric multifrontal factorisation and solves, batched per nested-dissection level.

Each supernode's front is the dense matrix over its pivot unknowns `V` and the ancestor
unknowns `U` it couples to:

    F = [[F11, F21ᵀ], [F21, F22]],  F11: V×V,  F21: U×V,  F22: U×U.

The partial factorisation eliminates `V` and hands the Schur complement `F22 - F21 F11⁻¹ F21ᵀ`
to the parent front (extend-add). Two pivot rules share that structure:

- `CholeskyPivots` (real symmetric positive definite): F11 = L Lᵀ, store L and F21 L⁻ᵀ.
- `LUPivots` (complex symmetric, not Hermitian, as in the frequency domain): pivoted LU of F11
  and G = F11⁻¹ F21ᵀ, i.e. a block LDLᵀ without conjugation.

Every operation is a dense batched LAPACK/BLAS call over all supernodes of a level, so the
whole factorisation is `depth + 1` sequential steps, and `jax.vmap` adds batch dimensions
(wavelengths, phantoms) on top.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._elimination_plan import EliminationPlan


def _t(x):
    return jnp.swapaxes(x, -1, -2)


def _tri(a, b, *, lower=True, transpose_a=False, left_side=True):
    return jax.lax.linalg.triangular_solve(
        a, b, left_side=left_side, lower=lower, transpose_a=transpose_a
    )


class CholeskyPivots:
    """Pivot rule for real symmetric positive-definite fronts: F11 = L Lᵀ, L21 = F21 L⁻ᵀ."""

    @staticmethod
    def partial_factor(f11, f21, f22):
        l11 = jnp.linalg.cholesky(f11)
        l21 = _tri(l11, f21, left_side=False, transpose_a=True)
        return (l11, l21), f22 - l21 @ _t(l21)

    @staticmethod
    def forward(factors, w_pivot):
        l11, l21 = factors
        y = _tri(l11, w_pivot)
        return y, l21 @ y

    @staticmethod
    def backward(factors, y_pivot, x_update):
        l11, l21 = factors
        return _tri(l11, y_pivot - _t(l21) @ x_update, transpose_a=True)


class LUPivots:
    """Pivot rule for complex symmetric (non-Hermitian) fronts: a block LDLᵀ.

    Stores the pivoted LU of F11 and G = F11⁻¹ F21ᵀ; nothing is conjugated.
    """

    @staticmethod
    def _lu_solve(lu, perm, rhs):
        rhs = jnp.take_along_axis(rhs, perm[..., :, None], axis=-2)
        y = jax.lax.linalg.triangular_solve(
            lu, rhs, left_side=True, lower=True, unit_diagonal=True
        )
        return _tri(lu, y, lower=False)

    @classmethod
    def partial_factor(cls, f11, f21, f22):
        lu, _, perm = jax.lax.linalg.lu(f11)
        g = cls._lu_solve(lu, perm, _t(f21))
        return (lu, perm, g), f22 - f21 @ g

    @staticmethod
    def forward(factors, w_pivot):
        _, _, g = factors
        return w_pivot, _t(g) @ w_pivot

    @classmethod
    def backward(cls, factors, y_pivot, x_update):
        lu, perm, g = factors
        return cls._lu_solve(lu, perm, y_pivot) - g @ x_update


def pivot_rule(dtype):
    """`CholeskyPivots` for real dtypes, `LUPivots` for complex ones."""
    return LUPivots if jnp.issubdtype(dtype, jnp.complexfloating) else CholeskyPivots


def _pad_last(x, axes):
    """Append one zero along each of the given (negative) axes."""
    widths = [(0, 0)] * x.ndim
    for axis in axes:
        widths[axis] = (0, 1)
    return jnp.pad(x, widths)


def factorize(plan: EliminationPlan, values: jnp.ndarray):
    """Factorise the matrix whose COO entries (in the plan's pattern) are `values`.

    Arguments:
        plan: the symbolic plan of the matrix pattern.
        values: (nnz,) real (symmetric positive definite) or complex (symmetric) entries.

    Returns:
        Per-level factors (deepest level first), for `solve_factored`.
    """
    rule = pivot_rule(values.dtype)
    factors = []
    update = None
    for level in plan.levels:
        fronts = jnp.zeros(level.storage_size, values.dtype)
        fronts = fronts.at[level.entry_targets].add(values[level.entry_ids], indices_are_sorted=True)
        fronts = fronts.at[level.pad_diagonal].set(1, indices_are_sorted=True)
        f, p = level.front_size, level.n_pivot
        fronts = fronts.reshape(level.n_super, f, f)
        if update is not None:
            children = _pad_last(update, (-1, -2)).reshape(-1)
            fronts = fronts + children[level.matrix_gather[0]] + children[level.matrix_gather[1]]
        level_factors, update = rule.partial_factor(
            fronts[:, :p, :p], fronts[:, p:, :p], fronts[:, p:, p:]
        )
        factors.append(level_factors)
    return tuple(factors)


def solve_factored(plan: EliminationPlan, factors, rhs: jnp.ndarray) -> jnp.ndarray:
    """Solve `A x = rhs` with the factors of `factorize`.

    Arguments:
        plan: the symbolic plan.
        factors: output of `factorize`.
        rhs: (n, k) right-hand sides.

    Returns:
        (n, k) solutions, in the dtype of the factors.
    """
    dtype = jnp.result_type(factors[0][0].dtype, rhs.dtype)
    rule = pivot_rule(dtype)
    rhs = rhs.astype(dtype)
    k = rhs.shape[-1]
    forward = []
    update = None
    for level, level_factors in zip(plan.levels, factors):
        f_pivot = rhs.at[level.pivot_nodes].get(mode="fill", fill_value=0)
        f_update = jnp.zeros((level.n_super, level.n_update, k), dtype)
        if update is not None:
            children = _pad_last(update, (-2,)).reshape(-1, k)
            front = children[level.vector_gather[0]] + children[level.vector_gather[1]]
            f_pivot = f_pivot + front[:, : level.n_pivot]
            f_update = front[:, level.n_pivot :]
        y_pivot, to_update = rule.forward(level_factors, f_pivot)
        update = f_update - to_update
        forward.append(y_pivot)
    pivot_solutions = []
    parent_front = None
    for level, level_factors, y_pivot in zip(
        reversed(plan.levels), reversed(factors), reversed(forward)
    ):
        if parent_front is None:
            x_update = jnp.zeros((level.n_super, level.n_update, k), dtype)
        else:
            x_update = _pad_last(parent_front, (-2,)).reshape(-1, k)[level.parent_gather]
        x_pivot = rule.backward(level_factors, y_pivot, x_update)
        parent_front = jnp.concatenate([x_pivot, x_update], axis=1)
        pivot_solutions.append(x_pivot.reshape(-1, k))
    return jnp.concatenate(pivot_solutions[::-1])[plan.solution_gather]
