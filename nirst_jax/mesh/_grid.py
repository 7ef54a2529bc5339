"""The square pixel grid of images, and sparse interpolation between it and mesh nodes.

Convention: an image is indexed `[..., iy, ix]`; pixel (iy, ix) is centred at
x = x0 + (ix + ½)·Δ, y = y0 + (iy + ½)·Δ, so y grows with the row index (plot with
`origin="lower"`, `extent=grid.extent`). Pixels whose centre lies outside the mesh are outside
the image mask and hold 0.
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
    """A `size`×`size` grid of square pixels covering [low, high] × [y_low, y_low + high − low] mm.

    The default is the reference study's 100×100 grid over the 82 mm disk.

    Attributes:
        size: pixels per side.
        low, high: extent of the grid along x in mm (and along y unless `y_low` is given).
        y_low: lower edge along y (default `low`: the square [low, high]²).
    """

    size: int = 100
    low: float = -41.0
    high: float = 41.0
    y_low: float | None = None

    def __post_init__(self):
        if isinstance(self.size, bool) or not float(self.size).is_integer() or self.size < 2:
            raise ValueError(f"grid size must be an integer ≥ 2, got {self.size!r}")
        object.__setattr__(self, "size", int(self.size))
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low):
            raise ValueError(f"grid extent must be finite with low < high, got ({self.low}, {self.high})")
        if self.y_low is not None and not np.isfinite(self.y_low):
            raise ValueError(f"grid y_low must be finite, got {self.y_low!r}")
        if self.y_low is not None and float(self.y_low) == float(self.low):
            object.__setattr__(self, "y_low", None)  # one spelling of the square [low, high]²

    @classmethod
    def covering(cls, mesh: Mesh, size: int = 100) -> "PixelGrid":
        """The smallest square grid centred on the mesh's bounding box that covers the mesh.

        For a mesh centred at the origin (a bounding-box centre within 10⁻⁹ of the extent
        from it) this is [−h, h]², h the largest |coordinate|: the study's grid over its disk.

        Arguments:
            mesh: the mesh (mm).
            size: pixels per side.

        Returns:
            The grid.
        """
        return cls.around(mesh.nodes, size)

    @classmethod
    def around(cls, points, size: int = 100) -> "PixelGrid":
        """The smallest square grid centred on the bounding box of `points` (P, 2) mm that
        covers them (a centre within 10⁻⁹ of the extent from the origin is the origin)."""
        points = np.asarray(points, float)
        center = (points.min(0) + points.max(0)) / 2
        half = float(np.abs(points - center).max())
        center = np.where(np.abs(center) <= 1e-9 * half, 0.0, center)
        half = float(np.abs(points - center).max())
        return cls(size, float(center[0] - half), float(center[0] + half), float(center[1] - half))

    @property
    def pixel_mm(self) -> float:
        return (self.high - self.low) / self.size

    @property
    def bottom(self) -> float:
        """Lower edge along y, mm."""
        return float(self.low if self.y_low is None else self.y_low)

    @property
    def axis(self) -> np.ndarray:
        """(size,) pixel-centre coordinates along x, in mm."""
        return self.low + (np.arange(self.size) + 0.5) * self.pixel_mm

    @property
    def y_axis(self) -> np.ndarray:
        """(size,) pixel-centre coordinates along y, in mm."""
        return self.bottom + (np.arange(self.size) + 0.5) * self.pixel_mm

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) of the grid in mm: matplotlib's `imshow(..., extent=)`."""
        return (float(self.low), float(self.high), self.bottom, self.bottom + float(self.high - self.low))

    def centers(self) -> np.ndarray:
        """(size, size, 2) pixel centres, `[iy, ix] → (x, y)`."""
        x, y = np.meshgrid(self.axis, self.y_axis)
        return np.stack([x, y], axis=-1)

    def to_dict(self) -> dict:
        """JSON-ready description (inverse: `PixelGrid(**data)`)."""
        return {"size": self.size, "low": float(self.low), "high": float(self.high), "y_low": self.bottom}


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
    x0, x1, y0, y1 = grid.extent
    slack = 1e-9 * (x1 - x0)
    low, high = np.array([x0, y0]) - slack, np.array([x1, y1]) + slack
    outside = np.flatnonzero(((points < low) | (points > high)).any(axis=1))
    if outside.size:
        i = int(outside[0])
        raise ValueError(
            f"node {i} at ({points[i, 0]:.4g}, {points[i, 1]:.4g}) mm lies outside the grid "
            f"[{x0:g}, {x1:g}] × [{y0:g}, {y1:g}]: the grid does not cover the mesh"
        )
    # Continuous pixel coordinates: pixel centre (ix, iy) sits at integer (ix, iy).
    u = (points - np.array([x0, y0])) / grid.pixel_mm - 0.5
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
