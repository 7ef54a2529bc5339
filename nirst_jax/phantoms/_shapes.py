"""Analytic inclusion shapes: an indicator `contains(points)` written with `jax.numpy`.

The indicators accept NumPy or JAX arrays (also traced ones), so the same shape code serves
the fixed test phantoms (NumPy parameters) and the batched generator (traced parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np


def inside_circle(points, center, radius):
    """(...,) bool: `points` (..., 2) within `radius` of `center` (2,)."""
    offset = jnp.asarray(points) - jnp.asarray(center)
    return (offset**2).sum(-1) <= jnp.asarray(radius) ** 2


def inside_star(points, center, radius, orders, amplitudes, phases):
    """(...,) bool: `points` (..., 2) inside r(θ) = radius·(1 + Σ_k a_k cos(m_k θ + φ_k)) about `center`.

    Arguments:
        points: (..., 2) mm.
        center: (2,) mm.
        radius: mean radius, mm.
        orders: the integer orders m_k (a static sequence).
        amplitudes, phases: (len(orders),) a_k and φ_k (arrays, may be traced).
    """
    offset = jnp.asarray(points) - jnp.asarray(center)
    angle = jnp.arctan2(offset[..., 1], offset[..., 0])
    boundary = jnp.ones_like(angle)
    for k, order in enumerate(orders):
        boundary = boundary + amplitudes[k] * jnp.cos(order * angle + phases[k])
    return (offset**2).sum(-1) <= (radius * boundary) ** 2


def _finite_point(name: str, value) -> tuple[float, float]:
    point = tuple(float(c) for c in np.ravel(value))
    if len(point) != 2 or not np.all(np.isfinite(point)):
        raise ValueError(f"{name} must be two finite numbers (x, y) in mm, got {value!r}")
    return point


def _positive(name: str, value) -> float:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and positive, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Circle:
    """A disk-shaped region.

    Attributes:
        center: (x, y) in mm.
        radius: radius in mm, > 0.
    """

    center: tuple[float, float]
    radius: float

    def __post_init__(self):
        object.__setattr__(self, "center", _finite_point("circle centre", self.center))
        object.__setattr__(self, "radius", _positive("circle radius", self.radius))

    @property
    def extent(self) -> float:
        """Largest distance from the centre to the boundary (mm)."""
        return self.radius

    def contains(self, points):
        """(...,) bool: points (..., 2) inside the circle."""
        return inside_circle(points, self.center, self.radius)


@dataclass(frozen=True)
class StarShape:
    """A star-shaped region with a wavy or spiculated rim, for irregular lesions and tissue.

    The boundary in polar coordinates about `center` is
    r(θ) = radius · (1 + Σ_k a_k cos(m_k θ + φ_k)).

    Attributes:
        center: (x, y) in mm.
        radius: mean radius in mm, > 0.
        harmonics: tuples (m_k, a_k, φ_k): integer order ≥ 1, amplitude, phase (rad);
            Σ|a_k| < 1 keeps r(θ) > 0.
    """

    center: tuple[float, float]
    radius: float
    harmonics: tuple[tuple[int, float, float], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "center", _finite_point("star-shape centre", self.center))
        object.__setattr__(self, "radius", _positive("star-shape radius", self.radius))
        harmonics = tuple((int(m), float(a), float(p)) for m, a, p in self.harmonics)
        if any(m < 1 for m, _, _ in harmonics):
            raise ValueError(f"harmonic orders must be ≥ 1, got {self.harmonics!r}")
        if sum(abs(a) for _, a, _ in harmonics) >= 1:
            raise ValueError(f"harmonic amplitudes must sum (in absolute value) below 1, got {self.harmonics!r}")
        object.__setattr__(self, "harmonics", harmonics)

    @property
    def extent(self) -> float:
        """An upper bound of the distance from the centre to the boundary (mm)."""
        return self.radius * (1 + sum(abs(a) for _, a, _ in self.harmonics))

    def contains(self, points):
        """(...,) bool: points (..., 2) inside the shape."""
        orders = [m for m, _, _ in self.harmonics]
        amplitudes = [a for _, a, _ in self.harmonics]
        phases = [p for _, _, p in self.harmonics]
        return inside_star(points, self.center, self.radius, orders, amplitudes, phases)


@dataclass(frozen=True)
class Ellipse:
    """An elliptical region.

    Attributes:
        center: (x, y) in mm.
        semi_axes: (a, b) semi-axis lengths in mm, > 0 (a along the rotated x axis).
        angle: rotation of the a axis from the x axis, radians.
    """

    center: tuple[float, float]
    semi_axes: tuple[float, float]
    angle: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "center", _finite_point("ellipse centre", self.center))
        axes = tuple(np.ravel(self.semi_axes).tolist())
        if len(axes) != 2:
            raise ValueError(f"ellipse semi_axes must be two lengths (a, b) in mm, got {self.semi_axes!r}")
        object.__setattr__(self, "semi_axes", tuple(_positive("ellipse semi-axis", a) for a in axes))
        if not np.isfinite(self.angle):
            raise ValueError(f"ellipse angle must be finite, got {self.angle!r}")
        object.__setattr__(self, "angle", float(self.angle))

    @property
    def extent(self) -> float:
        """The distance from the centre to the farthest boundary point (mm)."""
        return max(self.semi_axes)

    def contains(self, points):
        """(...,) bool: points (..., 2) inside the ellipse."""
        offset = jnp.asarray(points) - jnp.asarray(self.center)
        c, s = np.cos(self.angle), np.sin(self.angle)
        along = offset[..., 0] * c + offset[..., 1] * s
        across = -offset[..., 0] * s + offset[..., 1] * c
        a, b = self.semi_axes
        return (along / a) ** 2 + (across / b) ** 2 <= 1.0
