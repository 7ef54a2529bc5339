"""Matrix products at full float32 precision on every backend.

JAX computes float32 `@`, `einsum` and `dot` on recent NVIDIA GPUs with TensorFloat-32 (10-bit
mantissa) unless told otherwise. That is fine for network layers but not for the physics: on an
H200 it put 1.4e-3 of the largest entry into the float32 Jacobian (7e-7 on a CPU) and 7e-3 into
simulated ln A. The physics, the reconstructions and the learned methods' physics steps use
these two functions instead; float64 products are unaffected either way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def matmul(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """`a @ b` with full-precision float32 arithmetic.

    Arguments:
        a, b: arrays as for `jnp.matmul`.

    Returns:
        The product.
    """
    return jnp.matmul(a, b, precision=_HIGHEST)


def einsum(subscripts: str, *operands: jnp.ndarray) -> jnp.ndarray:
    """`jnp.einsum` with full-precision float32 arithmetic.

    Arguments:
        subscripts: the einsum specification.
        operands: its arrays.

    Returns:
        The contraction.
    """
    return jnp.einsum(subscripts, *operands, precision=_HIGHEST)
