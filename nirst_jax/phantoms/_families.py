"""Families of test phantoms with lesion shapes the training distribution never shows.

The study's distribution (and `realistic`) draws circular inclusions only. These families keep
its tissue values and MRI grey levels but change the shapes, to measure how a method trained on
circles generalises (docs/data.md, "Shape families"):

- "ellipses": one elliptical lesion, semi-major axis a ∈ [6, 12] mm, axis ratio b/a ∈ [0.35,
  0.7], any orientation;
- "irregular": one lobed/spiculated lesion r(θ) = r₀(1 + Σ aₖ cos(mₖθ + φₖ)), r₀ ∈ [6, 10] mm,
  orders mₖ = 2, 3, 5, 7 with aₖ ∈ [0, 0.15] each;
- "three-inclusions": three circular inclusions of radius ∈ [5, 10] mm at least 3 mm apart
  (the study's Fig. S3 case drawn at random; training phantoms have at most two).

Centres are uniform over the positions that keep the lesion `margin_mm` inside the rim; values
are drawn like the training phantoms' (`TissueTable.sample_background`, `sample_lesion`).
"""

from __future__ import annotations

import jax
import numpy as np

from .._random import seed_key
from ._config import PhantomConfig
from ._phantom import Phantom, Region
from ._shapes import Circle, Ellipse, StarShape

SHAPE_FAMILIES = ("ellipses", "irregular", "three-inclusions")
IRREGULAR_ORDERS = (2, 3, 5, 7)
_GAP_MM = 3.0
_TRIES = 10_000


def _centre(rng: np.random.Generator, room: float) -> tuple[float, float]:
    """A point uniform in the disk of radius `room` (mm)."""
    radius, angle = np.sqrt(rng.uniform()) * room, rng.uniform(0, 2 * np.pi)
    return (float(radius * np.cos(angle)), float(radius * np.sin(angle)))


def _shapes(family: str, rng: np.random.Generator, room: float) -> list:
    if family == "ellipses":
        a = rng.uniform(6.0, 12.0)
        return [Ellipse(_centre(rng, room - a), (a, a * rng.uniform(0.35, 0.7)), rng.uniform(0, np.pi))]
    if family == "irregular":
        harmonics = tuple((m, rng.uniform(0.0, 0.15), rng.uniform(0, 2 * np.pi)) for m in IRREGULAR_ORDERS)
        shape = StarShape((0.0, 0.0), rng.uniform(6.0, 10.0), harmonics)
        return [StarShape(_centre(rng, room - shape.extent), shape.radius, harmonics)]
    circles: list[Circle] = []
    for _ in range(_TRIES):
        radius = rng.uniform(5.0, 10.0)
        circle = Circle(_centre(rng, room - radius), radius)
        if all(np.hypot(*np.subtract(circle.center, c.center)) >= circle.radius + c.radius + _GAP_MM for c in circles):
            circles.append(circle)
            if len(circles) == 3:
                return circles
    raise RuntimeError("could not place three inclusions")  # pragma: no cover (room for ≥ 3 on any study disk)


def shape_family(family: str, count: int, seed: int = 0, config: PhantomConfig = PhantomConfig()) -> list[Phantom]:
    """`count` random phantoms of a shape family (module docstring).

    Arguments:
        family: one of `SHAPE_FAMILIES`.
        count: phantoms.
        seed: the draw (the same seed gives the same phantoms).
        config: the distribution whose disk, margin, tissue values, MRI grey levels and
            (reference) scattering law the phantoms keep.

    Returns:
        The phantoms, named "<family> k".
    """
    if family not in SHAPE_FAMILIES:
        raise ValueError(f"unknown shape family {family!r}; choose from {SHAPE_FAMILIES}")
    if isinstance(count, bool) or int(count) != count or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    room = config.radius_mm - config.margin_mm
    if room < 24.0:
        raise ValueError(f"shape families need a disk radius of ≥ 24 mm inside the margin, got {room:g} mm")
    rng = np.random.default_rng([int(seed), SHAPE_FAMILIES.index(family)])
    root = jax.random.fold_in(seed_key(seed, "shape-family"), SHAPE_FAMILIES.index(family))
    phantoms = []
    for k in range(int(count)):
        keys = jax.random.split(jax.random.fold_in(root, k), 4)
        background = config.tissue.sample_background(keys[0])
        regions = tuple(
            Region(shape, tuple(float(v) for v in config.tissue.sample_lesion(key, background)),
                   config.mri.inclusion_grey, f"lesion {i + 1}")
            for i, (shape, key) in enumerate(zip(_shapes(family, rng, room), keys[1:]))
        )
        phantoms.append(Phantom(tuple(float(v) for v in background), regions, config.mri.background_grey,
                                config.reference_scatter, config.radius_mm, f"{family} {k}"))
    return phantoms
