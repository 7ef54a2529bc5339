"""The symmetric sweep operator, blocked, in plain XLA operations.

Sweeping the pivot set K of a symmetric matrix A replaces

    A_KK → −A_KK⁻¹,   A_iK → A_iK A_KK⁻¹,   A_Kj → A_KK⁻¹ A_Kj,   A_ij → A_ij − A_iK A_KK⁻¹ A_Kj.

Sweeping the first p unknowns of a front F = [[F11, F21ᵀ], [F21, F22]] therefore yields, in
one pass, −F11⁻¹, G = F11⁻¹ F21ᵀ and the Schur complement F22 − F21 G: a block LDLᵀ step
without pivoting and without conjugation. That is valid for real symmetric positive-definite
matrices and for complex symmetric ones whose real and imaginary parts are positive definite,
as in the frequency-domain diffusion equation (K + µa M + iωM/c), for which unpivoted symmetric
elimination is stable (N. J. Higham, Math. Comp. 67, 1591–1599, 1998).

Pivots are swept `block` at a time in a `fori_loop`, each block's own inverse by recursive
2×2 block elimination. Why no LAPACK: jaxlib 0.10.2's batched CPU LAPACK kernels block a pool
thread while waiting for sub-tasks queued on the same pool, and deadlock when XLA runs several
at once (observed on two cores). Matrix products have no such problem and suit accelerators.
Block 8 balances run time and compile time on CPU (measured, docs/benchmarks.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._full_precision import matmul

DEFAULT_BLOCK = 8


def _t(x):
    return jnp.swapaxes(x, -1, -2)


def _small_inverse(a):
    if a.shape[-1] == 1:
        return 1 / a
    a11, a21, a22 = a[..., 0, 0], a[..., 1, 0], a[..., 1, 1]
    scale = 1 / (a11 * a22 - a21 * a21)
    rows = [jnp.stack([a22, -a21], -1), jnp.stack([-a21, a11], -1)]
    return jnp.stack(rows, -2) * scale[..., None, None]


def symmetric_inverse(a: jnp.ndarray) -> jnp.ndarray:
    """Inverses of symmetric matrices (..., n, n) by recursive block elimination, unpivoted.

    With W = A21 A11⁻¹ and S = A22 − W A21ᵀ: A⁻¹ = [[A11⁻¹ + Wᵀ S⁻¹ W, −Wᵀ S⁻¹], [−S⁻¹ W, S⁻¹]].

    Arguments:
        a: real symmetric positive definite, or complex symmetric with positive definite real
            and imaginary parts.

    Returns:
        (..., n, n) inverses.
    """
    n = a.shape[-1]
    if n <= 2:
        return _small_inverse(a)
    h = n // 2
    inverse11 = symmetric_inverse(a[..., :h, :h])
    w = matmul(a[..., h:, :h], inverse11)
    inverse22 = symmetric_inverse(a[..., h:, h:] - matmul(w, _t(a[..., h:, :h])))
    inverse21 = -matmul(inverse22, w)
    inverse11 = inverse11 - matmul(_t(w), inverse21)
    return jnp.concatenate(
        [jnp.concatenate([inverse11, _t(inverse21)], -1), jnp.concatenate([inverse21, inverse22], -1)],
        -2,
    )


def _sweep_block(a, start, size: int):
    """Sweep pivots start, …, start + size − 1 of symmetric matrices a (..., f, f)."""
    columns = jax.lax.dynamic_slice_in_dim(a, start, size, axis=-1)  # A_·K, (..., f, size)
    pivot_inverse = symmetric_inverse(jax.lax.dynamic_slice_in_dim(columns, start, size, axis=-2))
    scaled = matmul(columns, pivot_inverse)  # A_·K A_KK⁻¹
    a = a - matmul(scaled, _t(columns))
    a = jax.lax.dynamic_update_slice_in_dim(a, scaled, start, axis=-1)
    a = jax.lax.dynamic_update_slice_in_dim(a, _t(scaled), start, axis=-2)
    pivot_rows = jax.lax.dynamic_slice_in_dim(a, start, size, axis=-2)
    pivot_rows = jax.lax.dynamic_update_slice_in_dim(pivot_rows, -pivot_inverse, start, axis=-1)
    return jax.lax.dynamic_update_slice_in_dim(a, pivot_rows, start, axis=-2)


def sweep(matrices: jnp.ndarray, n_pivot: int, block: int = DEFAULT_BLOCK) -> jnp.ndarray:
    """Sweep the first `n_pivot` unknowns of symmetric matrices.

    Arguments:
        matrices: (..., f, f) symmetric matrices (see the module docstring for which).
        n_pivot: number of leading unknowns to sweep, ≤ f.
        block: pivots swept per step.

    Returns:
        (..., f, f): [[−F11⁻¹, F11⁻¹ F21ᵀ], [F21 F11⁻¹, F22 − F21 F11⁻¹ F21ᵀ]].
    """
    full = n_pivot // block
    if full:
        matrices = jax.lax.fori_loop(
            0, full, lambda i, a: _sweep_block(a, i * block, block), matrices
        )
    if n_pivot % block:
        matrices = _sweep_block(matrices, full * block, n_pivot % block)
    return matrices
