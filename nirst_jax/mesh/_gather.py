"""`WeightedGather`: a sparse linear map whose rows each combine a few entries."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np


class WeightedGather(eqx.Module):
    """Row p of the map is Σ_k weights[p, k] · x[indices[p, k]] (k fixed, small).

    Used for point sources and detector read-outs (functionals on nodal fields) and for
    interpolation between mesh nodes and pixel grids. jit-, vmap- and grad-compatible.

    Attributes:
        indices: (..., P, k) input indices.
        weights: (..., P, k) weights (zero for unused slots).
    """

    indices: np.ndarray
    weights: np.ndarray

    @property
    def count(self) -> int:
        """Number of rows P."""
        return self.indices.shape[-2]

    def __call__(self, values: jnp.ndarray) -> jnp.ndarray:
        """Apply to the last axis: (..., N) → (..., P)."""
        values = jnp.asarray(values)
        real = jnp.finfo(jnp.result_type(values.dtype, jnp.float32)).dtype
        return (values[..., self.indices] * jnp.asarray(self.weights, real)).sum(-1)

    def positions(self, nodes) -> np.ndarray:
        """Where each row reads, for weights that are barycentric in `nodes` (N, 2): (..., P, 2)
        (they reproduce linear functions, so the coordinates themselves)."""
        return (np.asarray(self.weights)[..., None] * np.asarray(nodes)[np.asarray(self.indices)]).sum(-2)

    def columns(self, n: int, dtype) -> jnp.ndarray:
        """The transpose as a dense (n, P) matrix: column p holds row p's weights."""
        rows = np.broadcast_to(np.arange(self.count)[:, None], self.indices.shape)
        return jnp.zeros((n, self.count), dtype).at[self.indices, rows].add(jnp.asarray(self.weights, dtype))
