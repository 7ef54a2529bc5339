"""Optodes: point sources, boundary detector read-outs, rim fibres and measurement layouts.

Sources and detectors are `WeightedGather` functionals on nodal fields: a source's weights
form its right-hand side (`columns`), a detector reads a field by applying its weights.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..mesh import Mesh
from ..mesh._gather import WeightedGather
from ..mesh._locate import as_points, locate_points, project_to_boundary, rim_tolerance


def point_sources(mesh: Mesh, points) -> WeightedGather:
    """Unit point sources at `points`: barycentric weights in the containing elements.

    Points on the boundary, or just outside it (within a quarter of the local boundary edge
    length, e.g. on the circle of a polygonal disk), are projected onto the boundary.

    Arguments:
        mesh: the mesh.
        points: (S, 2) source positions in mm.

    Returns:
        (S,) `WeightedGather`.
    """
    points = as_points(points, "source")
    located = locate_points(mesh, points, outside_tolerance=rim_tolerance(mesh, points), what="source")
    return WeightedGather(
        indices=mesh.elements[located.elements].astype(np.int32), weights=located.barycentric
    )


def boundary_detectors(mesh: Mesh, points) -> WeightedGather:
    """Boundary read-out of detectors at `points` (NIRFAST's rule).

    A detector inside an element that touches the boundary reads the element's boundary
    nodes with its barycentric weights renormalised over them. A detector on or just outside
    the boundary (within a quarter of the local boundary edge length, e.g. on the circle of a
    polygonal disk) reads the nearest boundary edge, linearly interpolated at its projection.

    Arguments:
        mesh: the mesh.
        points: (D, 2) detector positions in mm.

    Returns:
        (D,) `WeightedGather` (weights on boundary nodes only).
    """
    points = as_points(points, "detector")
    located = locate_points(mesh, points, outside_tolerance=rim_tolerance(mesh, points), what="detector")
    nodes = mesh.elements[located.elements].astype(np.int32)
    weights = np.where(mesh.is_boundary_node[nodes], located.barycentric, 0.0)
    for i in np.flatnonzero(weights.sum(1) == 0):
        depth = project_to_boundary(mesh, points[i]).distance[0]
        raise ValueError(
            f"detector {i} at ({points[i, 0]:.6g}, {points[i, 1]:.6g}) mm is {depth:.3g} mm "
            "inside the boundary; detectors are read on the boundary, so place them on it"
        )
    # Outside points were projected onto their nearest edge: barycentric weights there
    # are the linear interpolation along that edge.
    return WeightedGather(indices=nodes, weights=weights / weights.sum(1, keepdims=True))


def rim_directions(count: int, angle_offset_deg: float = 0.0) -> np.ndarray:
    """(count, 2) unit vectors of `count` fibres evenly spaced from `angle_offset_deg`
    (counter-clockwise from +x): fibre i at `angle_offset_deg + 360·i/count` degrees."""
    angles = np.radians(angle_offset_deg + 360.0 * np.arange(count) / count)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def rim_positions(mesh: Mesh, count: int, *, angle_offset_deg: float = 0.0, center=None) -> np.ndarray:
    """Evenly spaced fibre positions on the mesh boundary.

    Fibre i sits where the ray from `center` at angle `angle_offset_deg + 360·i/count`
    (counter-clockwise from +x) leaves the mesh.

    Arguments:
        mesh: the mesh (its boundary must be star-shaped about `center`).
        count: number of fibres.
        angle_offset_deg: angle of fibre 0 in degrees.
        center: (x, y) ray origin; default the mean of the boundary nodes.

    Returns:
        (count, 2) positions on the boundary, in mm.
    """
    if int(count) != count or count < 1:
        raise ValueError(f"fibre count must be a positive integer, got {count!r}")
    center = mesh.nodes[mesh.boundary_nodes].mean(0) if center is None else np.asarray(center, float)
    direction = rim_directions(count, angle_offset_deg)
    a = mesh.nodes[mesh.boundary_edges[:, 0]] - center
    b = mesh.nodes[mesh.boundary_edges[:, 1]] - center
    ab = b - a
    # Solve t·d = a + u·(b − a) for the ray parameter t ≥ 0 and edge parameter u ∈ [0, 1].
    cross = lambda p, q: p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]  # noqa: E731
    denom = cross(direction[:, None, :], -ab[None])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = cross(a[None], -ab[None]) / denom
        u = cross(direction[:, None, :], a[None]) / denom
    hit = (np.abs(denom) > 0) & (u >= -1e-12) & (u <= 1 + 1e-12) & (t > 0)
    t = np.where(hit, t, -np.inf)
    reach = t.max(axis=1)
    if not np.isfinite(reach).all():
        raise ValueError("some fibre rays do not meet the boundary; is `center` inside the mesh?")
    return center + reach[:, None] * direction


def inward_normals(mesh: Mesh, boundary_points) -> np.ndarray:
    """Unit inward normals of the boundary at points on it (averaged at vertices).

    Arguments:
        mesh: the mesh.
        boundary_points: (P, 2) points on (or next to) the boundary.

    Returns:
        (P, 2) unit vectors pointing into the mesh.
    """
    edges = mesh.boundary_edges
    tangent = mesh.nodes[edges[:, 1]] - mesh.nodes[edges[:, 0]]
    edge_normal = np.stack([-tangent[:, 1], tangent[:, 0]], 1)  # interior is on the left
    edge_normal /= np.linalg.norm(edge_normal, axis=1, keepdims=True)
    node_normal = np.zeros_like(mesh.nodes)
    np.add.at(node_normal, edges[:, 0], edge_normal)
    np.add.at(node_normal, edges[:, 1], edge_normal)
    projection = project_to_boundary(mesh, boundary_points)
    t = projection.edge_parameter[:, None]
    e = edges[projection.edges]
    normal = np.where(t <= 1e-9, node_normal[e[:, 0]], np.where(t >= 1 - 1e-9, node_normal[e[:, 1]], edge_normal[projection.edges]))
    return normal / np.linalg.norm(normal, axis=1, keepdims=True)


def move_inward(mesh: Mesh, boundary_points, depth_mm) -> np.ndarray:
    """Move boundary points `depth_mm` (scalar or (P,)) along the inward normal."""
    points = as_points(boundary_points)
    depth = np.broadcast_to(np.asarray(depth_mm, float), (len(points),))
    return points + depth[:, None] * inward_normals(mesh, points)


def _indices(what: str, values, limit: int | None) -> np.ndarray:
    """Validate integer indices in [0, limit) (limit None: just ≥ 0)."""
    array = np.atleast_1d(np.asarray(values))
    if array.size and not np.all(np.mod(array, 1) == 0):
        raise ValueError(f"{what} indices must be integers, got {array.tolist()}")
    array = array.astype(np.int64)
    bad = (array < 0) | ((array >= limit) if limit is not None else False)
    if bad.any():
        bound = f"0..{limit - 1}" if limit is not None else "≥ 0"
        raise ValueError(f"{what} index {array[bad][0]} is out of range ({bound})")
    return array


class MeasurementLayout(eqx.Module):
    """Which detector each measurement of each source uses, and which are active.

    Data are stored as (source, slot) with `slot` running over the detectors of that source;
    for a ring of n fibres that is (n, n − 1): each source with every other fibre.

    Attributes:
        detector_index: (S, K) detector used by each (source, slot).
        active: (S, K) bool, False for masked (absent) measurements.
    """

    detector_index: np.ndarray
    active: np.ndarray

    @classmethod
    def ring(cls, n_fibres: int = 16, active_fibres=None) -> "MeasurementLayout":
        """Every fibre a source and a detector; source s measured at the other n − 1 fibres.

        Arguments:
            n_fibres: number of fibres on the ring.
            active_fibres: indices of the fibres in use (default all); measurements that
                involve an inactive fibre, as source or detector, are masked.

        Returns:
            The (n, n − 1) layout.
        """
        if int(n_fibres) != n_fibres or n_fibres < 2:
            raise ValueError(f"a ring needs at least 2 fibres, got {n_fibres!r}")
        n = int(n_fibres)
        index = np.array([[d for d in range(n) if d != s] for s in range(n)], np.int32)
        used = np.ones(n, bool)
        if active_fibres is not None:
            fibres = _indices("active fibre", active_fibres, n)
            used = np.zeros(n, bool)
            used[fibres] = True
        return cls(detector_index=index, active=used[:, None] & used[index])

    @classmethod
    def from_pairs(cls, pairs, n_sources: int, active=None) -> "MeasurementLayout":
        """Layout from (source, detector) pairs, e.g. a NIRFAST `.link` list.

        Arguments:
            pairs: (L, 2) zero-based (source, detector) pairs.
            n_sources: number of sources S.
            active: (L,) bool, default all True.

        Returns:
            An (S, K) layout, K the largest number of pairs of one source; missing slots
            are inactive.
        """
        pairs = np.asarray(pairs)
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            raise ValueError(f"pairs must have shape (L, 2), got {pairs.shape}")
        sources = _indices("pair source", pairs[:, 0], n_sources)
        detectors = _indices("pair detector", pairs[:, 1], None)
        pairs = np.stack([sources, detectors], 1)
        active = np.ones(len(pairs), bool) if active is None else np.asarray(active, bool)
        if active.shape != (len(pairs),):
            raise ValueError(f"active must have shape ({len(pairs)},), got {active.shape}")
        per_source = [pairs[pairs[:, 0] == s, 1] for s in range(n_sources)]
        flags = [active[pairs[:, 0] == s] for s in range(n_sources)]
        k = max(1, max(len(p) for p in per_source))
        index = np.zeros((n_sources, k), np.int32)
        mask = np.zeros((n_sources, k), bool)
        for s, (det, flag) in enumerate(zip(per_source, flags)):
            index[s, : len(det)] = det
            mask[s, : len(det)] = flag
        return cls(detector_index=index, active=mask)

    @property
    def shape(self) -> tuple[int, int]:
        return self.detector_index.shape

    def slots(self) -> dict[tuple[int, int], int]:
        """{(source, detector): slot} of the active measurements (zero-based)."""
        index, active = np.asarray(self.detector_index), np.asarray(self.active)
        return {(s, int(index[s, k])): k for s, k in zip(*(a.tolist() for a in np.nonzero(active)))}

    def select(self, data: jnp.ndarray, source_axis: int = -2) -> jnp.ndarray:
        """Source-detector data → measurements of this layout.

        Arguments:
            data: (..., S, D, ...) with the source axis at `source_axis`, detectors next.
            source_axis: position of the S axis (default: second to last).

        Returns:
            `data` with its (S, D) axes replaced by the layout's (S, K).
        """
        leading = (slice(None),) * (source_axis % data.ndim)
        rows = np.arange(self.detector_index.shape[0])[:, None]
        return data[(*leading, rows, self.detector_index)]
