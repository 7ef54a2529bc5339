"""Quality triangle meshes of any simple polygon (a breast slice's contour, in mm).

The engine is ours, on SciPy's Delaunay triangulation: boundary nodes are placed exactly on the
contour by arc length (`sample_contour`) and held fixed; interior nodes start on a hexagonal
lattice and are relaxed by the force equilibrium of DistMesh (Persson & Strang, SIAM Review
46(2), 2004): every edge is a spring that only pushes, toward a length proportional to the
local target size, with re-triangulation whenever nodes have moved far. No meshing binary, no
licence beyond SciPy's (Triangle forbids commercial use; gmsh is GPL).
"""

from __future__ import annotations

import numpy as np
from matplotlib.path import Path
from scipy.spatial import Delaunay, cKDTree

from ._contour import closed_contour, project_onto_segments, sample_contour
from ._mesh import Mesh

_SPRING_SCALE = 1.2  # springs longer than the target push, so the nodes fill the domain
_STEP = 0.2
_RETRIANGULATE = 0.1  # of the local size
_CONVERGED = 1e-3  # largest step, of the local size


def polygon_mesh(
    contour,
    spacing_mm: float,
    *,
    boundary_spacing_mm: float | None = None,
    grading: float = 0.3,
    max_iterations: int = 400,
) -> Mesh:
    """Triangulate the inside of a closed contour with near-equilateral elements.

    Arguments:
        contour: (P, 2) vertices of a simple polygon in mm (either orientation; see
            `closed_contour` for what is refused).
        spacing_mm: the longest edge (as for `disk_mesh`; the mean edge is ≈ 0.75 of it).
        boundary_spacing_mm: the longest edge along the contour (default `spacing_mm`);
            smaller values grade the mesh finer toward the boundary, where the optodes are.
        grading: growth of the target size with distance from the boundary (mm per mm) when
            `boundary_spacing_mm` < `spacing_mm`.
        max_iterations: relaxation steps at most.

    Returns:
        The `Mesh`: its boundary nodes are the contour's sampled points (vertices sharper
        than 30° kept), so its boundary lies on the contour.

    Raises:
        ValueError: bad contour or sizes; RuntimeError: the contour has features too fine for
            the spacing (a boundary segment is not an edge of the triangulation).
    """
    polygon = closed_contour(contour)
    spacing = _positive("spacing_mm", spacing_mm)
    edge = spacing if boundary_spacing_mm is None else _positive("boundary_spacing_mm", boundary_spacing_mm)
    if edge > spacing:
        raise ValueError(f"boundary_spacing_mm ({edge}) must not exceed spacing_mm ({spacing})")
    grading = _positive("grading", grading)
    extent = np.ptp(polygon, axis=0)
    if spacing > 0.5 * extent.min():
        raise ValueError(f"spacing_mm ({spacing}) is too coarse for a contour {extent[0]:.3g} × {extent[1]:.3g} mm")

    # Relaxed meshes have edges up to ≈ 1.33 × their target: aim below `spacing` (the longest
    # edge, as for `disk_mesh`) and shrink the target until every edge is within it.
    scale = 1.0 / 1.34
    for _ in range(6):
        mesh = _relaxed_mesh(polygon, spacing * scale, edge * scale, grading, max_iterations)
        longest = mesh.edge_lengths().max()
        if longest <= spacing * (1 + 1e-9):
            return mesh
        scale *= 0.97 * spacing / longest
    raise RuntimeError(f"could not mesh the contour with edges ≤ {spacing} mm")  # pragma: no cover


def _relaxed_mesh(polygon, spacing, edge, grading, max_iterations) -> Mesh:
    """The relaxed mesh for target sizes `spacing` (inside) and `edge` (along the contour)."""
    boundary = sample_contour(polygon, edge)
    outline = Path(boundary)
    segments = np.stack([boundary, np.roll(boundary, -1, axis=0)], axis=1)
    tree = cKDTree(segments.mean(axis=1))

    def distance(points):  # unsigned distance to the sampled boundary, and the nearest boundary point
        _, candidates = tree.query(points, k=min(8, len(segments)))
        _, nearest = project_onto_segments(points[:, None], segments[candidates, 0], segments[candidates, 1])
        gaps = np.linalg.norm(points[:, None] - nearest, axis=-1)
        best = np.argmin(gaps, axis=1)
        rows = np.arange(len(points))
        return gaps[rows, best], nearest[rows, best]

    def size(points):
        return np.minimum(spacing, edge + grading * distance(points)[0]) if edge < spacing else np.full(len(points), spacing)

    interior = _initial_interior(polygon, outline, edge, size, distance)
    n_fixed = len(boundary)
    nodes = np.concatenate([boundary, interior])
    anchored = nodes.copy()
    elements = None
    for _ in range(max_iterations):
        local = size(nodes)
        if elements is None or (np.linalg.norm(nodes - anchored, axis=1) > _RETRIANGULATE * local).any():
            elements = _triangulate(nodes, outline)
            edges = _edges(elements)
            anchored = nodes.copy()
        vectors = nodes[edges[:, 0]] - nodes[edges[:, 1]]
        lengths = np.linalg.norm(vectors, axis=1)
        target = 0.5 * (local[edges[:, 0]] + local[edges[:, 1]])
        target *= _SPRING_SCALE * np.sqrt(np.sum(lengths**2) / np.sum(target**2))
        push = np.maximum(target - lengths, 0.0)[:, None] * vectors / lengths[:, None]
        force = np.stack([np.bincount(edges[:, 0], push[:, k], len(nodes)) - np.bincount(edges[:, 1], push[:, k], len(nodes))
                          for k in range(2)], axis=1)
        force[:n_fixed] = 0.0
        step = _STEP * force
        nodes = nodes + step
        nodes[n_fixed:] = _keep_inside(nodes[n_fixed:], outline, distance, local[n_fixed:])
        if (np.linalg.norm(step[n_fixed:], axis=1) < _CONVERGED * local[n_fixed:]).all():
            break
    elements = _triangulate(nodes, outline)
    mesh = Mesh(nodes, elements)
    _check_boundary(mesh, n_fixed)
    return mesh


def _positive(name: str, value) -> float:
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return value


def _initial_interior(polygon, outline, edge, size, distance) -> np.ndarray:
    """Hexagonal lattice at the finest size, thinned to the local size, away from the boundary."""
    low, high = polygon.min(axis=0), polygon.max(axis=0)
    rows = []
    for k, y in enumerate(np.arange(low[1], high[1] + edge, edge * np.sqrt(3) / 2)):
        xs = np.arange(low[0] + (k % 2) * edge / 2, high[0] + edge, edge)
        rows.append(np.column_stack([xs, np.full_like(xs, y)]))
    points = np.concatenate(rows)
    points = points[outline.contains_points(points)]
    gaps, _ = distance(points)
    local = size(points)
    points, gaps, local = points[gaps > 0.6 * local], gaps[gaps > 0.6 * local], local[gaps > 0.6 * local]
    keep = np.random.default_rng(0).random(len(points)) < (edge / local) ** 2
    return points[keep]


def _triangulate(nodes: np.ndarray, outline: Path) -> np.ndarray:
    """Delaunay triangles whose centroids lie inside the boundary."""
    elements = Delaunay(nodes).simplices
    return elements[outline.contains_points(nodes[elements].mean(axis=1))]


def _edges(elements: np.ndarray) -> np.ndarray:
    pairs = np.concatenate([elements[:, [0, 1]], elements[:, [1, 2]], elements[:, [2, 0]]])
    return np.unique(np.sort(pairs, axis=1), axis=0)


def _keep_inside(points, outline, distance, local) -> np.ndarray:
    """Interior nodes pushed outside moved back in, 0.5·size deep."""
    outside = ~outline.contains_points(points)
    if outside.any():
        _, nearest = distance(points[outside])
        points = points.copy()
        points[outside] = _inward(points[outside], nearest, outline, local[outside])
    return points


def _inward(points, nearest, outline, local):
    """Points 0.5·size inside the boundary, opposite the side they left."""
    away = points - nearest
    norm = np.linalg.norm(away, axis=1, keepdims=True)
    direction = np.divide(away, norm, out=np.zeros_like(away), where=norm > 0)
    candidates = nearest - 0.5 * local[:, None] * direction
    inside = outline.contains_points(candidates)
    candidates[~inside] = nearest[~inside] + 0.5 * local[~inside, None] * direction[~inside]
    return candidates


def _check_boundary(mesh: Mesh, n_fixed: int) -> None:
    """The mesh's boundary must be the sampled contour, in order."""
    expected = np.sort(np.stack([np.arange(n_fixed), (np.arange(n_fixed) + 1) % n_fixed], axis=1), axis=1)
    actual = np.sort(mesh.boundary_edges, axis=1)
    missing = np.setdiff1d(expected.view("i8,i8"), actual.astype(np.int64).view("i8,i8"))
    extra = np.setdiff1d(actual.astype(np.int64).view("i8,i8"), expected.view("i8,i8"))
    if missing.size or extra.size:
        where = mesh.nodes[missing[0][0]] if missing.size else mesh.nodes[extra[0][0]]
        raise RuntimeError(
            f"the contour has features finer than the spacing near ({where[0]:.3g}, {where[1]:.3g}) mm: "
            "its boundary is not the triangulation's boundary; use a smaller boundary_spacing_mm"
        )
