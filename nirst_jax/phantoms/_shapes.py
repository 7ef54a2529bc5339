"""Analytic inclusion shapes and their area-weighted coverage of mesh nodes and pixels.

A shape's value on the mesh is never resampled from an image (or vice versa): each node gets
the fraction of its hat function's mass that lies inside the shape, ∫φ_j χ / ∫φ_j, and each
pixel the fraction of its area inside the shape, both by exact-enough sub-sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..mesh import Mesh, PixelGrid


@dataclass(frozen=True)
class Circle:
    """A disk-shaped inclusion.

    Attributes:
        center: (x, y) in mm.
        radius: radius in mm, > 0.
    """

    center: tuple[float, float]
    radius: float

    def __post_init__(self):
        center = tuple(float(c) for c in self.center)
        if len(center) != 2 or not np.all(np.isfinite(center)):
            raise ValueError(f"circle centre must be two finite numbers, got {self.center!r}")
        if not (np.isfinite(self.radius) and self.radius > 0):
            raise ValueError(f"circle radius must be positive, got {self.radius!r}")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "radius", float(self.radius))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(...,) bool: points (..., 2) inside the circle."""
        offset = np.asarray(points, float) - np.asarray(self.center)
        return (offset**2).sum(-1) <= self.radius**2


def _subtriangle_barycentrics(level: int) -> np.ndarray:
    """Centroids (in barycentric coordinates) of the level² congruent sub-triangles."""
    points = []
    for i in range(level):
        for j in range(level - i):
            # Upright sub-triangle, then the inverted one next to it.
            points.append(((i + 1 / 3) / level, (j + 1 / 3) / level))
            if j < level - i - 1:
                points.append(((i + 2 / 3) / level, (j + 2 / 3) / level))
    b = np.array(points)
    return np.stack([1 - b.sum(1), b[:, 0], b[:, 1]], axis=1)


def node_coverage(mesh: Mesh, shape, level: int = 8) -> np.ndarray:
    """Fraction ∫φ_j χ / ∫φ_j of each node's hat function inside `shape`.

    Arguments:
        mesh: the mesh.
        shape: an object with `contains(points) -> bool`.
        level: each element is split into level² sub-triangles, sampled at their centroids.

    Returns:
        (N,) values in [0, 1].
    """
    bary = _subtriangle_barycentrics(level)  # (Q, 3)
    corners = mesh.nodes[mesh.elements]  # (M, 3, 2)
    samples = np.einsum("qk,mkd->mqd", bary, corners)
    inside = shape.contains(samples).astype(float)  # (M, Q)
    # ∫_e φ_a χ ≈ area/Q · Σ_q φ_a(q) χ(q); ∫_e φ_a = area/3.
    weighted = mesh.areas[:, None] * (inside @ bary) / len(bary)  # (M, 3)
    numerator = np.zeros(mesh.n_nodes)
    np.add.at(numerator, mesh.elements, weighted)
    denominator = np.zeros(mesh.n_nodes)
    np.add.at(denominator, mesh.elements, np.repeat(mesh.areas[:, None] / 3, 3, axis=1))
    return numerator / denominator


def pixel_coverage(grid: PixelGrid, shape, samples: int = 8) -> np.ndarray:
    """Fraction of each pixel's area inside `shape`.

    Arguments:
        grid: the pixel grid.
        shape: an object with `contains(points) -> bool`.
        samples: sub-samples per pixel side.

    Returns:
        (size, size) values in [0, 1], indexed [iy, ix].
    """
    offsets = (np.arange(samples) + 0.5) / samples - 0.5
    centers = grid.centers()  # (n, n, 2)
    dx, dy = np.meshgrid(offsets, offsets)
    sub = centers[:, :, None, :] + grid.pixel_mm * np.stack([dx.ravel(), dy.ravel()], -1)[None, None]
    return shape.contains(sub).mean(-1)
