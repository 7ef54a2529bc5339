"""Where inclusions may go: uniform positions with a given clearance from a domain's edge.

The study's disk places them analytically (`DiskPlacement`, the draws of the reference
study's distribution); any other domain by rejection against a clearance map, the distance to
its boundary sampled on a fine grid (`RegionPlacement`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

F32 = jnp.float32
_LENS_CANDIDATES = 64
"""Candidate midpoints for a pair of inclusions in a disk; each lands in the valid lens with
probability ≥ ½, so all failing has probability < 1e-19."""
REGION_CANDIDATES = 4096
"""Candidates per draw in a region; a draw is refused up front (`RegionPlacement.check`) when
fewer than `MIN_VALID_FRACTION` of them would be valid, so all failing has probability < 1e-8."""
MIN_VALID_FRACTION = 0.005


def _unit(angle):
    return jnp.stack([jnp.cos(angle), jnp.sin(angle)])


def uniform_in_disk(key, radius):
    """A point uniform in the disk of `radius` around the origin."""
    u = jax.random.uniform(key, (2,), F32)
    return jnp.sqrt(u[0]) * radius * _unit(2 * jnp.pi * u[1])


class DiskPlacement(eqx.Module):
    """Positions in the disk of `radius_mm` around the origin (the reference study's draws).

    Attributes:
        radius_mm: the disk's radius.
    """

    radius_mm: float = eqx.field(static=True)

    def single(self, key, margin, extra):
        """A point uniform among those at least `margin` + `extra` mm inside the rim."""
        return uniform_in_disk(key, (self.radius_mm - margin) - extra)

    def pair(self, key, margin, extra, half_distance):
        """Two points 2·`half_distance` apart, both at least `margin` + `extra` inside the rim,
        uniformly.

        The pair is a direction u (uniform) and a midpoint m uniform in the lens
        {|m ± half·u| ≤ room}, sampled by rejection from the lens's bounding box.
        """
        room = (self.radius_mm - margin) - extra
        k_angle, k_box = jax.random.split(key)
        u = _unit(jax.random.uniform(k_angle, (), F32, maxval=2 * jnp.pi))
        v = jnp.stack([-u[1], u[0]])
        along = room - half_distance
        across = jnp.sqrt(jnp.maximum(room**2 - half_distance**2, 0.0))
        box = jax.random.uniform(k_box, (_LENS_CANDIDATES, 2), F32, minval=-1.0, maxval=1.0)
        a, b = box[:, 0] * along, box[:, 1] * across
        valid = a**2 + b**2 + half_distance**2 + 2 * half_distance * jnp.abs(a) <= room**2
        pick = jnp.argmax(valid)
        midpoint = a[pick] * u + b[pick] * v
        return jnp.stack([midpoint - half_distance * u, midpoint + half_distance * u])


class RegionPlacement(eqx.Module):
    """Positions inside any region, by rejection against its clearance map.

    Attributes:
        clearance: (H, W) distance to the region's boundary at grid points (mm; negative
            outside), bilinearly interpolated between them.
        origin: (2,) x, y of grid point [0, 0], mm.
        step_mm: grid spacing.
    """

    clearance: jnp.ndarray
    origin: jnp.ndarray
    step_mm: float = eqx.field(static=True)

    @classmethod
    def from_polygon(cls, polygon, step_mm: float = 0.5) -> "RegionPlacement":
        """The clearance map of a closed polygon (mm), on a grid of `step_mm` over its bounding box."""
        from matplotlib.path import Path

        from ..mesh._contour import closed_contour, project_onto_segments

        polygon = closed_contour(polygon)
        low, high = polygon.min(0), polygon.max(0)
        counts = np.ceil((high - low) / step_mm).astype(int) + 1
        x = low[0] + step_mm * np.arange(counts[0])
        y = low[1] + step_mm * np.arange(counts[1])
        points = np.stack(np.meshgrid(x, y), -1).reshape(-1, 2)
        distance = np.full(len(points), np.inf)
        ends = np.roll(polygon, -1, axis=0)
        for a, b in zip(polygon, ends):
            _, nearest = project_onto_segments(points, a, b)
            distance = np.minimum(distance, np.linalg.norm(points - nearest, axis=1))
        inside = Path(polygon).contains_points(points)
        clearance = np.where(inside, distance, -distance).reshape(counts[1], counts[0])
        return cls(clearance=jnp.asarray(clearance, F32), origin=jnp.asarray(low, F32), step_mm=float(step_mm))

    @property
    def largest_clearance(self) -> float:
        """The deepest point's distance from the boundary, mm."""
        return float(np.max(np.asarray(self.clearance)))

    def clearance_at(self, points):
        """(...,) bilinear clearance at `points` (..., 2), mm (−1 beyond the map)."""
        grid = (points - self.origin) / self.step_mm
        height, width = self.clearance.shape
        return jax.scipy.ndimage.map_coordinates(self.clearance, [grid[..., 1], grid[..., 0]], order=1, mode="constant", cval=-1.0)

    def _box(self, key, shape):
        height, width = self.clearance.shape
        extent = jnp.asarray([width - 1, height - 1], F32) * self.step_mm
        return self.origin + jax.random.uniform(key, shape + (2,), F32) * extent

    def single(self, key, margin, extra):
        """A point uniform among those at least `margin` + `extra` mm inside the boundary."""
        clearance = margin + extra
        candidates = self._box(key, (REGION_CANDIDATES,))
        return candidates[jnp.argmax(self.clearance_at(candidates) >= clearance)]

    def pair(self, key, margin, extra, half_distance):
        """Two points 2·`half_distance` apart, both at least `margin` + `extra` inside the
        boundary: a uniform direction and a midpoint uniform among the valid ones."""
        clearance = margin + extra
        k_box, k_angle = jax.random.split(key)
        midpoints = self._box(k_box, (REGION_CANDIDATES,))
        angles = jax.random.uniform(k_angle, (REGION_CANDIDATES,), F32, maxval=2 * jnp.pi)
        offset = half_distance * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
        ends = jnp.stack([midpoints - offset, midpoints + offset], 1)
        valid = (self.clearance_at(ends) >= clearance).all(1)
        return ends[jnp.argmax(valid)]

    def check(self, what: str, clearance: float, half_distance: float | None = None) -> None:
        """Refuse a draw that too few candidates would satisfy (see `MIN_VALID_FRACTION`).

        Arguments:
            what: the draw, for the error message.
            clearance: its clearance from the boundary, mm.
            half_distance: half the distance of a pair (None: a single point).
        """
        key = jax.random.PRNGKey(0)
        keys = jax.random.split(key, 8)
        if half_distance is None:
            points = jax.vmap(lambda k: self._box(k, (REGION_CANDIDATES,)))(keys)
            valid = self.clearance_at(points) >= clearance
        else:
            midpoints = jax.vmap(lambda k: self._box(k, (REGION_CANDIDATES,)))(keys)
            angles = jax.random.uniform(key, midpoints.shape[:2], F32, maxval=2 * jnp.pi)
            offset = half_distance * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
            valid = (self.clearance_at(midpoints - offset) >= clearance) & (self.clearance_at(midpoints + offset) >= clearance)
        fraction = float(np.mean(np.asarray(valid)))
        if fraction < MIN_VALID_FRACTION:
            raise ValueError(
                f"the domain leaves too little room for {what} ({clearance:g} mm from the boundary"
                + ("" if half_distance is None else f", {2 * half_distance:g} mm apart")
                + f"): {100 * fraction:.2g} % of its bounding box qualifies (deepest point {self.largest_clearance:.3g} mm "
                "inside); use smaller inclusions, a smaller margin or a larger domain"
            )
