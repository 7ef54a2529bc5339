"""Numeric multifrontal factorisation and solves, batched per nested-dissection level.

Each supernode's front is the dense matrix over its pivot unknowns `V` and the ancestor
unknowns `U` it couples to:

    F = [[F11, F21ᵀ], [F21, F22]],  F11: V×V,  F21: U×V,  F22: U×U.

The partial factorisation inverts F11 by the sweep operator (see `_sweep`), keeps F11⁻¹ and
G = F11⁻¹ F21ᵀ, and hands the Schur complement F22 − F21 G to the parent front (extend-add):
a block LDLᵀ without conjugation, the same for real (continuous-wave) and complex
(frequency-domain) matrices.
The solves are then matrix products only:

    forward:  update_U −= Gᵀ w_V          backward:  x_V = F11⁻¹ w_V − G x_U.

All supernodes of a level are processed as one batch, so the factorisation is `depth + 1`
sequential steps, and `jax.vmap` adds batch dimensions (wavelengths, phantoms) on top.
"""

from __future__ import annotations

import jax.numpy as jnp

from .._full_precision import matmul
from ._elimination_plan import EliminationPlan
from ._sweep import sweep


def _t(x):
    return jnp.swapaxes(x, -1, -2)


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
        # Sweeping only the pivot block and forming G and the Schur complement by two products
        # skips the U×U updates of every sweep step (24% faster on the 1800-node disk).
        pivot_inverse = -sweep(fronts[:, :p, :p], p)
        g = matmul(pivot_inverse, fronts[:, :p, p:])
        factors.append((pivot_inverse, g))
        update = fronts[:, p:, p:] - matmul(fronts[:, p:, :p], g)
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
        _, g = level_factors
        update = f_update - matmul(_t(g), f_pivot)
        forward.append(f_pivot)
    pivot_solutions = []
    parent_front = None
    for level, level_factors, y_pivot in zip(
        reversed(plan.levels), reversed(factors), reversed(forward)
    ):
        if parent_front is None:
            x_update = jnp.zeros((level.n_super, level.n_update, k), dtype)
        else:
            x_update = _pad_last(parent_front, (-2,)).reshape(-1, k)[level.parent_gather]
        pivot_inverse, g = level_factors
        x_pivot = matmul(pivot_inverse, y_pivot) - matmul(g, x_update)
        parent_front = jnp.concatenate([x_pivot, x_update], axis=1)
        pivot_solutions.append(x_pivot.reshape(-1, k))
    return jnp.concatenate(pivot_solutions[::-1])[plan.solution_gather]
