"""Point location in a `Mesh`: containing elements, barycentric weights, boundary projection."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from matplotlib.tri import Triangulation

from ._mesh import Mesh


@dataclass(frozen=True)
class PointLocation:
    """Where points fall in a mesh.

    Attributes:
        elements: (P,) index of the element holding each point.
        barycentric: (P, 3) weights of the element's three nodes (sum 1, all ≥ 0).
        outside_distance: (P,) how far outside the mesh a point was before it was projected
            onto the boundary (0 for points inside).
    """

    elements: np.ndarray
    barycentric: np.ndarray
    outside_distance: np.ndarray


@dataclass(frozen=True)
class BoundaryProjection:
    """Nearest points on the mesh boundary.

    Attributes:
        points: (P, 2) the projected points.
        edges: (P,) index into `mesh.boundary_edges` of the nearest boundary edge.
        edge_parameter: (P,) position along that edge, 0 at its first node and 1 at its second.
        distance: (P,) distance from each input point to its projection.
    """

    points: np.ndarray
    edges: np.ndarray
    edge_parameter: np.ndarray
    distance: np.ndarray


@functools.lru_cache(maxsize=16)
def _trifinder(mesh: Mesh):
    triangulation = Triangulation(mesh.nodes[:, 0], mesh.nodes[:, 1], mesh.elements)
    return triangulation.get_trifinder()


def as_points(points, what: str = "point") -> np.ndarray:
    """Validate an (P, 2) array of finite coordinates (a single (2,) point is accepted).

    Arguments:
        points: the coordinates.
        what: singular name for messages ("source", "detector", ...).

    Returns:
        (P, 2) float64 array.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 1 and points.shape == (2,):
        points = points[None]
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{what} positions must have shape (P, 2), got {points.shape}")
    bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
    if bad.size:
        raise ValueError(f"{what} {bad[0]} is not finite: {points[bad[0]].tolist()}")
    return points


def barycentric_weights(mesh: Mesh, elements: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(P, 3) barycentric coordinates of `points` in the given `elements`."""
    p = mesh.nodes[mesh.elements[elements]]
    d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    r = points - p[:, 0]
    det = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    l1 = (r[:, 0] * d2[:, 1] - r[:, 1] * d2[:, 0]) / det
    l2 = (d1[:, 0] * r[:, 1] - d1[:, 1] * r[:, 0]) / det
    weights = np.stack([1.0 - l1 - l2, l1, l2], axis=1)
    return np.clip(weights, 0.0, None) / np.clip(weights, 0.0, None).sum(1, keepdims=True)


def project_to_boundary(mesh: Mesh, points) -> BoundaryProjection:
    """Project points onto the nearest point of the mesh boundary.

    Arguments:
        mesh: the mesh.
        points: (P, 2) coordinates in mm.

    Returns:
        A `BoundaryProjection`.
    """
    points = as_points(points)
    a = mesh.nodes[mesh.boundary_edges[:, 0]]
    b = mesh.nodes[mesh.boundary_edges[:, 1]]
    ab = b - a
    t = ((points[:, None, :] - a[None]) * ab[None]).sum(-1) / (ab * ab).sum(-1)[None]
    t = np.clip(t, 0.0, 1.0)
    foot = a[None] + t[..., None] * ab[None]
    dist = np.linalg.norm(points[:, None, :] - foot, axis=-1)
    nearest = np.argmin(dist, axis=1)
    rows = np.arange(len(points))
    return BoundaryProjection(
        points=foot[rows, nearest],
        edges=nearest,
        edge_parameter=t[rows, nearest],
        distance=dist[rows, nearest],
    )


def rim_tolerance(mesh: Mesh, points, fraction: float = 0.25) -> np.ndarray:
    """`fraction` of the length of the boundary edge nearest each point (mm).

    Optodes this close outside the mesh (a quarter edge by default) count as on its boundary,
    which covers, for example, points on the true circle of a polygonal disk mesh.
    """
    edges = mesh.boundary_edges[project_to_boundary(mesh, points).edges]
    return fraction * np.linalg.norm(mesh.nodes[edges[:, 1]] - mesh.nodes[edges[:, 0]], axis=1)


def inside_mesh(mesh: Mesh, points, edge_fraction: float = 0.01) -> np.ndarray:
    """(P,) bool: inside the mesh, or outside it by at most `edge_fraction` of the nearest
    boundary edge's length (1% covers the gap between a polygonal disk and its circle)."""
    points = as_points(points)
    inside = np.asarray(_trifinder(mesh)(points[:, 0], points[:, 1])) >= 0
    outside = np.flatnonzero(~inside)
    if outside.size:
        distance = project_to_boundary(mesh, points[outside]).distance
        inside[outside] = distance <= rim_tolerance(mesh, points[outside], edge_fraction)
    return inside


def locate_points(
    mesh: Mesh, points, *, outside_tolerance=0.0, what: str = "point"
) -> PointLocation:
    """Find the element holding each point and its barycentric weights.

    Points outside the mesh by at most `outside_tolerance` mm are projected onto the
    boundary first; points farther out raise a `ValueError` naming the point.

    Arguments:
        mesh: the mesh.
        points: (P, 2) coordinates in mm.
        outside_tolerance: accepted distance outside the mesh, in mm (scalar or (P,)).
        what: name of the points for error messages ("source", "detector", ...).

    Returns:
        A `PointLocation`.
    """
    points = as_points(points, what)
    elements = np.asarray(_trifinder(mesh)(points[:, 0], points[:, 1]), dtype=np.int64)
    outside_distance = np.zeros(len(points))
    outside = np.flatnonzero(elements < 0)
    located = points.copy()
    if outside.size:
        projection = project_to_boundary(mesh, points[outside])
        tolerance = np.broadcast_to(np.asarray(outside_tolerance, float), (len(points),))
        too_far = projection.distance > tolerance[outside]
        if too_far.any():
            k = int(np.argmax(too_far))
            i = int(outside[k])
            raise ValueError(
                f"{what} {i} at ({points[i, 0]:.6g}, {points[i, 1]:.6g}) mm is outside the mesh "
                f"(by {projection.distance[k]:.3g} mm)"
            )
        located[outside] = projection.points
        elements[outside] = mesh.boundary_edge_elements[projection.edges]
        outside_distance[outside] = projection.distance
    return PointLocation(
        elements=elements,
        barycentric=barycentric_weights(mesh, elements, located),
        outside_distance=outside_distance,
    )
