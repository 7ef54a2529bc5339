"""Area-weighted coverage of mesh nodes and image pixels by analytic shapes.

A shape's value on the mesh is never resampled from an image (or vice versa): each node gets
the fraction of its hat function's mass inside the shape, ∫φ_j χ / ∫φ_j, and each pixel the
fraction of its area inside the shape. Both integrals are evaluated on fixed sub-sample points
(centroids of a regular split of each element or pixel), so coverage is one gather-sum of
indicator values: jit- and vmap-compatible with traced shape parameters.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..mesh import Mesh, PixelGrid, WeightedGather


def _subtriangle_barycentrics(level: int) -> np.ndarray:
    """Centroids (barycentric coordinates) of the level² congruent sub-triangles."""
    points = []
    for i in range(level):
        for j in range(level - i):
            # Upright sub-triangle, then the inverted one next to it.
            points.append(((i + 1 / 3) / level, (j + 1 / 3) / level))
            if j < level - i - 1:
                points.append(((i + 2 / 3) / level, (j + 2 / 3) / level))
    b = np.array(points)
    return np.stack([1 - b.sum(1), b[:, 0], b[:, 1]], axis=1)


class Coverage(eqx.Module):
    """Fractions of nodes or pixels covered by a shape, from sub-sample indicator values.

    Attributes:
        points: (Q, 2) sub-sample points in mm.
        combine: (P, k) weighted sum of indicator values at `points` giving each fraction.
        shape: output shape (`(N,)` for nodes, `(size, size)` for pixels).
    """

    points: np.ndarray
    combine: WeightedGather
    shape: tuple[int, ...] = eqx.field(static=True)

    @classmethod
    def nodes(cls, mesh: Mesh, level: int = 8) -> "Coverage":
        """Coverage of each node's hat function, ∫φ_j χ / ∫φ_j.

        Arguments:
            mesh: the mesh.
            level: each element is split into level² sub-triangles sampled at their centroids.

        Returns:
            The operator.
        """
        bary = _subtriangle_barycentrics(level)  # (Q, 3)
        q = len(bary)
        points = np.einsum("qk,mkd->mqd", bary, mesh.nodes[mesh.elements]).reshape(-1, 2)
        # Entry (element e, corner a, sample s) adds area_e/Q · φ_a(s) to node elements[e, a].
        m = mesh.n_elements
        node = np.repeat(mesh.elements, q, axis=1).reshape(m, 3, q)
        sample = np.broadcast_to((np.arange(m)[:, None] * q + np.arange(q)[None])[:, None, :], (m, 3, q))
        weight = mesh.areas[:, None, None] * bary.T[None] / q
        node, sample, weight = node.ravel(), sample.ravel(), weight.ravel()
        hat_mass = np.bincount(mesh.elements.ravel(), np.repeat(mesh.areas / 3, 3), mesh.n_nodes)
        order = np.argsort(node, kind="stable")
        counts = np.bincount(node, minlength=mesh.n_nodes)
        slot = np.arange(len(node)) - np.repeat(np.cumsum(counts) - counts, counts)
        indices = np.zeros((mesh.n_nodes, counts.max()), np.int32)
        weights = np.zeros((mesh.n_nodes, counts.max()))
        indices[node[order], slot] = sample[order]
        weights[node[order], slot] = weight[order] / hat_mass[node[order]]
        return cls(points=points, combine=WeightedGather(indices, weights), shape=(mesh.n_nodes,))

    @classmethod
    def pixels(cls, grid: PixelGrid = PixelGrid(), samples: int = 8) -> "Coverage":
        """Coverage of each pixel's area.

        Arguments:
            grid: the pixel grid.
            samples: sub-samples per pixel side.

        Returns:
            The operator; output indexed [iy, ix] as the grid.
        """
        return cls._of_pixels(grid.centers(), grid.pixel_mm * np.eye(2), samples)

    @classmethod
    def image(cls, affine, shape: tuple[int, int], samples: int = 8) -> "Coverage":
        """Coverage of each pixel of an image placed by an affine, e.g. a scanner's slice with
        anisotropic, offset or rotated pixels.

        Arguments:
            affine: (3, 3) (column, row, 1) → (x, y, 1) in mm, as `ImageSlice.affine`.
            shape: (rows, columns).
            samples: sub-samples per pixel side.

        Returns:
            The operator; output indexed [row, column].
        """
        affine = np.asarray(affine, np.float64)
        rows, columns = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        centres = np.stack([columns, rows], -1) @ affine[:2, :2].T + affine[:2, 2]
        return cls._of_pixels(centres, affine[:2, :2], samples)

    @classmethod
    def _of_pixels(cls, centres: np.ndarray, steps: np.ndarray, samples: int) -> "Coverage":
        """`samples`² sub-samples per pixel at `centres` (H, W, 2) mm, `steps` (2, 2) mm per
        column (first column) and per row (second)."""
        unit = (np.arange(samples) + 0.5) / samples - 0.5
        along_column, along_row = np.meshgrid(unit, unit)
        sub = centres.reshape(-1, 1, 2) + (np.stack([along_column.ravel(), along_row.ravel()], -1) @ steps.T)[None]
        p, q = sub.shape[:2]
        indices = np.arange(p * q, dtype=np.int32).reshape(p, q)
        weights = np.full((p, q), 1.0 / q)
        return cls(points=sub.reshape(-1, 2), combine=WeightedGather(indices, weights), shape=centres.shape[:2])

    def __call__(self, contains) -> jnp.ndarray:
        """Fractions in [0, 1] covered by the region `contains(points) -> bool`.

        Arguments:
            contains: indicator of the region, evaluated on (Q, 2) points.

        Returns:
            Array of `self.shape`.
        """
        inside = jnp.asarray(contains(jnp.asarray(self.points))).astype(jnp.float32)
        return self.combine(inside).reshape(self.shape)


def node_coverage(mesh: Mesh, shape, level: int = 8) -> np.ndarray:
    """(N,) fraction ∫φ_j χ / ∫φ_j of each node's hat function inside `shape` (NumPy)."""
    return np.asarray(Coverage.nodes(mesh, level)(shape.contains), np.float64)


def pixel_coverage(grid: PixelGrid, shape, samples: int = 8) -> np.ndarray:
    """(size, size) fraction of each pixel's area inside `shape` (NumPy)."""
    return np.asarray(Coverage.pixels(grid, samples)(shape.contains), np.float64)


def paint(base, fractions, values):
    """Layer regions over a base value: v ← v + f_k (value_k − v), k = 0, 1, …

    Later regions cover earlier ones; a partly covered node or pixel mixes them by area.

    Arguments:
        base: (C,) or (C, *S) base values (e.g. background HbO, Hb, water).
        fractions: (K, *S) coverage of each region.
        values: (K, C) value of each region.

    Returns:
        (C, *S).
    """
    fractions = jnp.asarray(fractions)
    values = jnp.asarray(values)
    spatial = fractions.shape[1:]
    out = jnp.asarray(base)
    out = jnp.broadcast_to(out.reshape(out.shape + (1,) * (len(spatial) + 1 - out.ndim)), (values.shape[1],) + spatial)
    for k in range(fractions.shape[0]):
        value = values[k].reshape((-1,) + (1,) * len(spatial))
        out = out + fractions[k] * (value - out)
    return out
