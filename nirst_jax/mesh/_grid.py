"""The square pixel grid of images, and sparse interpolation between it and mesh nodes.

Convention: an image is indexed `[..., iy, ix]`; pixel (iy, ix) is centred at
x = x0 + (ix + ½)·Δ, y = y0 + (iy + ½)·Δ, so y grows with the row index (plot with
`origin="lower"`). Pixels whose centre lies outside the mesh are outside the image mask and
hold 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ._gather import WeightedGather
from ._locate import inside_mesh, locate_points, rim_tolerance
from ._mesh import Mesh


@dataclass(frozen=True)
class PixelGrid:
    """A `size`×`size` grid of square pixels covering [low, high]² mm.

    The default is the reference study's 100×100 grid over the 82 mm disk.

    Attributes:
        size: pixels per side.
        low, high: extent of the grid in mm (both axes).
    """

    size: int = 100
    low: float = -41.0
    high: float = 41.0

    def __post_init__(self):
        if isinstance(self.size, bool) or not float(self.size).is_integer() or self.size < 2:
            raise ValueError(f"grid size must be an integer ≥ 2, got {self.size!r}")
        object.__setattr__(self, "size", int(self.size))
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low):
            raise ValueError(f"grid extent must be finite with low < high, got ({self.low}, {self.high})")

    @property
    def pixel_mm(self) -> float:
        return (self.high - self.low) / self.size

    @property
    def axis(self) -> np.ndarray:
        """(size,) pixel-centre coordinates along x (and y), in mm."""
        return self.low + (np.arange(self.size) + 0.5) * self.pixel_mm

    def centers(self) -> np.ndarray:
        """(size, size, 2) pixel centres, `[iy, ix] → (x, y)`."""
        x, y = np.meshgrid(self.axis, self.axis)
        return np.stack([x, y], axis=-1)


class GridInterpolation(eqx.Module):
    """Linear interpolation between the nodes of a mesh and the pixels of a grid.

    Attributes:
        to_image: nodes → pixels: each pixel centre inside the mesh takes the P1 value at
            that point (barycentric weights); pixels outside take 0.
        to_nodes: pixels → nodes: bilinear interpolation of the pixel-centre values at each
            node, restricted to pixels inside the mask and renormalised, so the zeros
            outside never bleed into the rim.
        mask: (size, size) bool, pixel centres inside the mesh.
        size: pixels per side.
    """

    to_image: WeightedGather
    to_nodes: WeightedGather
    mask: np.ndarray
    size: int = eqx.field(static=True)

    @classmethod
    def build(cls, mesh: Mesh, grid: PixelGrid = PixelGrid()) -> "GridInterpolation":
        """Build both operators for `mesh` and `grid`.

        Arguments:
            mesh: the mesh.
            grid: the pixel grid.

        Returns:
            The `GridInterpolation`.
        """
        centers = grid.centers().reshape(-1, 2)
        inside = inside_mesh(mesh, centers)
        indices = np.zeros((len(centers), 3), np.int32)
        weights = np.zeros((len(centers), 3))
        located = locate_points(mesh, centers[inside], outside_tolerance=rim_tolerance(mesh, centers[inside]))
        indices[inside] = mesh.elements[located.elements]
        weights[inside] = located.barycentric
        mask = inside.reshape(grid.size, grid.size)
        return cls(
            to_image=WeightedGather(indices=indices, weights=weights),
            to_nodes=_bilinear_from_pixels(mesh.nodes, grid, mask),
            mask=mask,
            size=grid.size,
        )

    def nodes_to_image(self, values) -> jnp.ndarray:
        """(..., N) nodal values → (..., size, size) image (0 outside the mask)."""
        pixels = self.to_image(values)
        return pixels.reshape(pixels.shape[:-1] + (self.size, self.size))

    def image_to_nodes(self, image) -> jnp.ndarray:
        """(..., size, size) image → (..., N) nodal values."""
        image = jnp.asarray(image)
        if image.shape[-2:] != (self.size, self.size):
            raise ValueError(f"image must end in ({self.size}, {self.size}), got {image.shape}")
        return self.to_nodes(image.reshape(image.shape[:-2] + (-1,)))


def _bilinear_from_pixels(points: np.ndarray, grid: PixelGrid, mask: np.ndarray) -> WeightedGather:
    slack = 1e-9 * (grid.high - grid.low)
    outside = np.flatnonzero(((points < grid.low - slack) | (points > grid.high + slack)).any(axis=1))
    if outside.size:
        i = int(outside[0])
        raise ValueError(
            f"node {i} at ({points[i, 0]:.4g}, {points[i, 1]:.4g}) mm lies outside the grid "
            f"[{grid.low:g}, {grid.high:g}]²: the grid does not cover the mesh"
        )
    # Continuous pixel coordinates: pixel centre (ix, iy) sits at integer (ix, iy).
    u = (points - grid.low) / grid.pixel_mm - 0.5
    i0 = np.floor(u).astype(int)
    frac = u - i0
    indices, weights = [], []
    for dy in (0, 1):
        for dx in (0, 1):
            ix = np.clip(i0[:, 0] + dx, 0, grid.size - 1)
            iy = np.clip(i0[:, 1] + dy, 0, grid.size - 1)
            w = np.abs((1 - dx) - frac[:, 0]) * np.abs((1 - dy) - frac[:, 1])
            indices.append(iy * grid.size + ix)
            weights.append(np.where(mask[iy, ix], w, 0.0))
    indices = np.stack(indices, 1).astype(np.int32)
    weights = np.stack(weights, 1)
    total = weights.sum(1)
    if (total <= 0).any():
        i = int(np.flatnonzero(total <= 0)[0])
        raise ValueError(
            f"node {i} at ({points[i, 0]:.4g}, {points[i, 1]:.4g}) mm has no pixel of the grid's "
            "mask among its four neighbours: the grid does not cover the mesh"
        )
    return WeightedGather(indices=indices, weights=weights / total[:, None])
