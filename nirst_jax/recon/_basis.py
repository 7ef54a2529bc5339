"""Reconstruction bases: how a few unknown coefficients set the chromophores at the mesh nodes."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..mesh import Mesh, PixelGrid
from ..mesh._gather import WeightedGather
from ..mesh._grid import _bilinear_from_pixels


def _transpose(to_nodes: WeightedGather, n_coefficients: int) -> WeightedGather:
    """The transpose of a (N ← K) gather as a (K ← N) gather, rows padded with zero weights."""
    node = np.broadcast_to(np.arange(to_nodes.count)[:, None], to_nodes.indices.shape).ravel()
    coefficient = to_nodes.indices.ravel()
    weight = to_nodes.weights.ravel()
    keep = weight != 0
    node, coefficient, weight = node[keep], coefficient[keep], weight[keep]
    order = np.argsort(coefficient, kind="stable")
    node, coefficient, weight = node[order], coefficient[order], weight[order]
    counts = np.bincount(coefficient, minlength=n_coefficients)
    if (counts == 0).any():
        raise ValueError(f"basis function {int(np.argmin(counts))} touches no mesh node")
    slot = np.arange(len(node)) - np.repeat(np.cumsum(counts) - counts, counts)
    indices = np.zeros((n_coefficients, counts.max()), np.int32)
    weights = np.zeros((n_coefficients, counts.max()))
    indices[coefficient, slot] = node
    weights[coefficient, slot] = weight
    return WeightedGather(indices=indices, weights=weights)


class ReconstructionBasis(eqx.Module):
    """A linear map B from K coefficients to the N mesh nodes (values = B·coefficients).

    Build with `nodal` (B = I: every node an unknown) or `pixels` (bilinear hat functions on
    a coarse square grid, NIRFAST's "pixel basis"), which trades resolution for speed: the
    Gauss-Newton system has 3K unknowns.

    Attributes:
        to_nodes: (N, k) gather, row i giving node i's coefficients and weights.
        transpose: (K, p) gather for Bᵀ (rows padded with zero weights).
        centers: (K, 2) position of each coefficient, mm.
    """

    to_nodes: WeightedGather
    transpose: WeightedGather
    centers: np.ndarray

    @classmethod
    def nodal(cls, mesh: Mesh) -> "ReconstructionBasis":
        """Every mesh node is an unknown (B = I)."""
        identity = WeightedGather(
            indices=np.arange(mesh.n_nodes, dtype=np.int32)[:, None], weights=np.ones((mesh.n_nodes, 1))
        )
        return cls(to_nodes=identity, transpose=identity, centers=mesh.nodes.copy())

    @classmethod
    def constant_for(cls, n_nodes: int) -> "ReconstructionBasis":
        """One coefficient for all `n_nodes` nodes (a homogeneous medium)."""
        n = int(n_nodes)
        return cls(
            to_nodes=WeightedGather(indices=np.zeros((n, 1), np.int32), weights=np.ones((n, 1))),
            transpose=WeightedGather(indices=np.arange(n, dtype=np.int32)[None], weights=np.ones((1, n))),
            centers=np.full((1, 2), np.nan),
        )

    @classmethod
    def pixels(cls, mesh: Mesh, size: int = 24) -> "ReconstructionBasis":
        """Bilinear hat functions centred on a `size`×`size` grid spanning the mesh.

        Grid points span the mesh's bounding square, corner to corner; functions that touch
        no mesh node are dropped.

        Arguments:
            mesh: the mesh.
            size: grid points per side (≥ 2).

        Returns:
            The basis, K ≤ size² coefficients.
        """
        if isinstance(size, bool) or int(size) != size or size < 2:
            raise ValueError(f"pixel basis size must be an integer ≥ 2, got {size!r}")
        size = int(size)
        low, high = mesh.nodes.min(), mesh.nodes.max()
        step = (high - low) / (size - 1)
        grid = PixelGrid(size, low - step / 2, high + step / 2)
        gather = _bilinear_from_pixels(mesh.nodes, grid, np.ones((size, size), bool))
        used = np.unique(gather.indices[gather.weights != 0])
        compact = np.full(size * size, -1, np.int64)
        compact[used] = np.arange(len(used))
        indices = np.where(gather.weights != 0, compact[gather.indices], 0).astype(np.int32)
        to_nodes = WeightedGather(indices=indices, weights=np.asarray(gather.weights))
        centers = grid.centers().reshape(-1, 2)[used]
        return cls(to_nodes=to_nodes, transpose=_transpose(to_nodes, len(used)), centers=centers)

    @property
    def n_coefficients(self) -> int:
        return self.transpose.count

    @property
    def n_nodes(self) -> int:
        return self.to_nodes.count

    def nodes_from(self, coefficients) -> jnp.ndarray:
        """(..., K) coefficients → (..., N) nodal values."""
        return self.to_nodes(coefficients)

    def apply_transpose(self, values) -> jnp.ndarray:
        """(..., N) → (..., K): values·B, e.g. a nodal Jacobian into coefficient space."""
        return self.transpose(values)

    def average(self, values) -> jnp.ndarray:
        """(..., N) nodal values → (..., K) B-weighted averages (e.g. the MRI per coefficient)."""
        total = self.transpose(jnp.ones(self.n_nodes))
        return self.transpose(values) / total
