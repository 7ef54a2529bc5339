"""Closed contours (simple polygons, in mm): checks, orientation and arc-length sampling."""

from __future__ import annotations

import numpy as np

_OPEN_GAP = 5.0  # a closing segment this many median edges long means the contour was left open


def closed_contour(points, what: str = "contour") -> np.ndarray:
    """A checked simple polygon, counter-clockwise, without a repeated closing point.

    Arguments:
        points: (P, 2) vertices in mm, in order around the domain; the last may repeat the first.
        what: the name used in error messages.

    Returns:
        (P', 2) float64 vertices, counter-clockwise.

    Raises:
        ValueError: fewer than 3 distinct vertices, non-finite values, repeated consecutive
            vertices, zero area, two edges that cross or touch (naming the edges), or an open
            contour: a closing segment (last vertex → first) longer than 5 median edges, unless
            the last vertex repeats the first.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{what} must have shape (P, 2) (x, y in mm), got {points.shape}")
    bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
    if bad.size:
        raise ValueError(f"{what} vertices {bad[:5].tolist()} are not finite")
    closed_explicitly = len(points) > 1 and np.array_equal(points[0], points[-1])
    if closed_explicitly:
        points = points[:-1]
    if len(points) < 3:
        raise ValueError(f"{what} needs at least 3 distinct vertices, got {len(points)}")
    steps = np.linalg.norm(np.roll(points, -1, axis=0) - points, axis=1)
    scale = np.ptp(points, axis=0).max()
    repeated = np.flatnonzero(steps <= 1e-12 * scale)
    if repeated.size:
        raise ValueError(f"{what} vertices {repeated[:5].tolist()} repeat the vertex after them")
    typical = np.median(steps)
    if not closed_explicitly and steps[-1] > _OPEN_GAP * typical:
        raise ValueError(
            f"{what} looks open: the gap from its last vertex back to its first is {steps[-1]:.3g} mm, "
            f"{steps[-1] / typical:.0f}× its median edge ({typical:.3g} mm); give the vertices along that gap, "
            "or repeat the first vertex at the end if the straight closing side is meant"
        )
    crossing = _first_crossing(points)
    if crossing is not None:
        i, j = crossing
        raise ValueError(
            f"{what} is not a simple closed curve: its edges {i}–{i + 1} and {j}–{(j + 1) % len(points)} "
            f"cross or touch (near ({points[i, 0]:.3g}, {points[i, 1]:.3g}) mm)"
        )
    area = polygon_area(points)
    if abs(area) <= 1e-12 * scale**2:
        raise ValueError(f"{what} encloses no area")
    return points if area > 0 else points[::-1].copy()


def polygon_area(points: np.ndarray) -> float:
    """Signed area (mm²) of a polygon, positive when counter-clockwise."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _first_crossing(points: np.ndarray) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges that intersect, or None."""
    a, b = points, np.roll(points, -1, axis=0)
    n = len(points)
    low, high = np.minimum(a, b), np.maximum(a, b)
    for i in range(n - 2):
        j = np.arange(i + 2, n if i > 0 else n - 1)  # edges i and i+1 (and n-1, 0) share a vertex
        if not j.size:
            continue
        near = j[(low[j] <= high[i]).all(axis=1) & (high[j] >= low[i]).all(axis=1)]
        if not near.size:
            continue
        d1 = _cross(a[i], b[i], a[near])
        d2 = _cross(a[i], b[i], b[near])
        d3 = _cross(a[near], b[near], a[i][None])
        d4 = _cross(a[near], b[near], b[i][None])
        hits = near[(d1 * d2 <= 0) & (d3 * d4 <= 0)]
        if hits.size:
            return i, int(hits[0])
    return None


def _cross(origin, end, points):
    """z of (end − origin) × (points − origin)."""
    e = end - origin
    p = points - origin
    return e[..., 0] * p[..., 1] - e[..., 1] * p[..., 0]


def project_onto_segments(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest points on segments a→b (broadcast against `points`, last axis x, y).

    Returns:
        (t, nearest): the position along each segment in [0, 1], and the point there.
    """
    t = np.clip(np.sum((points - a) * (b - a), -1) / np.sum((b - a) ** 2, -1), 0.0, 1.0)
    return t, a + t[..., None] * (b - a)


def points_at_arc_length(points: np.ndarray, arc: np.ndarray) -> np.ndarray:
    """Points of a closed polygon at the given arc lengths (mm from vertex 0, counter-clockwise).

    Arguments:
        points: (P, 2) closed polygon.
        arc: (K,) arc lengths, taken modulo the perimeter.

    Returns:
        (K, 2) points on the polygon.
    """
    closed = np.concatenate([points, points[:1]])
    cumulative = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    arc = np.mod(np.asarray(arc, dtype=np.float64), cumulative[-1])
    segment = np.clip(np.searchsorted(cumulative, arc, side="right") - 1, 0, len(points) - 1)
    t = (arc - cumulative[segment]) / (cumulative[segment + 1] - cumulative[segment])
    return closed[segment] + t[:, None] * (closed[segment + 1] - closed[segment])


def sample_contour(points: np.ndarray, spacing_mm: float, corner_angle_deg: float = 30.0) -> np.ndarray:
    """Boundary nodes on a closed polygon, about `spacing_mm` apart along it, exactly on it.

    Vertices where the contour turns by more than `corner_angle_deg` are kept as nodes (so
    corners stay sharp); each stretch between them is divided into equal arcs no longer
    than `spacing_mm`.

    Arguments:
        points: (P, 2) counter-clockwise simple polygon (`closed_contour`).
        spacing_mm: the largest arc between neighbouring nodes.
        corner_angle_deg: turning angle above which a vertex is a corner.

    Returns:
        (B, 2) nodes, counter-clockwise.
    """
    incoming = points - np.roll(points, 1, axis=0)
    outgoing = np.roll(points, -1, axis=0) - points
    cos_turn = np.sum(incoming * outgoing, axis=1) / (
        np.linalg.norm(incoming, axis=1) * np.linalg.norm(outgoing, axis=1)
    )
    corners = np.flatnonzero(cos_turn < np.cos(np.radians(corner_angle_deg)))
    closed = np.concatenate([points, points[:1]])
    cumulative = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    perimeter = cumulative[-1]
    starts = cumulative[corners] if corners.size else np.array([0.0])
    ends = np.append(starts[1:], starts[0] + perimeter)
    arcs = []
    for start, end in zip(starts, ends):
        count = max(1, int(np.ceil((end - start) / spacing_mm - 1e-9)))
        arcs.append(start + (end - start) * np.arange(count) / count)
    return points_at_arc_length(points, np.concatenate(arcs))


def fibres_on_contour(points: np.ndarray, count: int, first_mm=None) -> np.ndarray:
    """`count` optode positions evenly spaced by arc length around a closed contour.

    Arguments:
        points: (P, 2) closed polygon in mm (`closed_contour` checks and orients it).
        count: number of fibres (≥ 2).
        first_mm: (x, y) near which fibre 0 sits (its nearest point on the contour; default
            vertex 0); the others follow counter-clockwise.

    Returns:
        (count, 2) positions on the contour in mm.
    """
    polygon = closed_contour(points)
    if isinstance(count, bool) or int(count) != count or count < 2:
        raise ValueError(f"count must be an integer ≥ 2, got {count!r}")
    closed = np.concatenate([polygon, polygon[:1]])
    lengths = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    start = 0.0
    if first_mm is not None:
        first = np.asarray(first_mm, dtype=np.float64)
        if first.shape != (2,) or not np.isfinite(first).all():
            raise ValueError(f"first_mm must be (x, y) in mm, got {first_mm!r}")
        t, nearest = project_onto_segments(first, polygon, closed[1:])
        k = int(np.argmin(np.linalg.norm(first - nearest, axis=1)))
        start = lengths[:k].sum() + t[k] * lengths[k]
    return points_at_arc_length(polygon, start + lengths.sum() * np.arange(int(count)) / int(count))
