"""Optodes: rim fibres, sources, boundary detectors and measurement layouts
(`nirst_jax.physics._optodes`, `nirst_jax.mesh._gather`)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from nirst_jax.mesh import Mesh, disk_mesh, locate_points, project_to_boundary, read_nirfast
from nirst_jax.mesh._gather import WeightedGather
from nirst_jax.physics import (
    MeasurementLayout,
    boundary_detectors,
    inward_normals,
    move_inward,
    point_sources,
    rim_positions,
)

R = 41.0


@pytest.fixture(scope="module")
def disk() -> Mesh:
    return disk_mesh(R, 4.0)


@pytest.fixture(scope="module")
def nirfast(nirfast_dir):
    return read_nirfast(nirfast_dir / "circle2000_86_stnd")


def dense(gather: WeightedGather, n: int) -> np.ndarray:
    """(P, N) matrix of a gather, built by applying it to unit vectors."""
    return np.asarray(gather(np.eye(n))).T


def node_at(mesh: Mesh, point) -> int:
    distance = np.hypot(*(mesh.nodes - np.asarray(point)).T)
    k = int(np.argmin(distance))
    assert distance[k] < 1e-9
    return k


def rim_midpoint(mesh: Mesh):
    """Point on the circle halfway between the boundary nodes at angles 0 and 2π/n (just
    outside the polygon), and those two nodes."""
    n = len(mesh.boundary_nodes)
    half = math.pi / n
    point = R * np.array([math.cos(half), math.sin(half)])
    nodes = node_at(mesh, (R, 0.0)), node_at(mesh, (R * math.cos(2 * half), R * math.sin(2 * half)))
    return point, nodes


# --------------------------------------------------------------------------- rim_positions


@pytest.mark.parametrize("count", [1, 7, 16, 64])
@pytest.mark.parametrize("offset", [0.0, 11.25, -30.0, 400.0])
def test_rim_positions_on_boundary_at_requested_angles(disk, count, offset):
    positions = rim_positions(disk, count, angle_offset_deg=offset)
    assert positions.shape == (count, 2)
    assert np.all(project_to_boundary(disk, positions).distance < 1e-9)
    angles = np.degrees(np.arctan2(positions[:, 1], positions[:, 0]))
    expected = offset + 360.0 * np.arange(count) / count
    difference = np.mod(angles - expected + 180.0, 360.0) - 180.0
    np.testing.assert_allclose(difference, 0.0, atol=1e-9)
    # On the inscribed polygon: between its apothem and the circle.
    radius = np.hypot(*positions.T)
    apothem = R * math.cos(math.pi / len(disk.boundary_nodes))
    assert np.all((radius >= apothem - 1e-9) & (radius <= R + 1e-9))


def test_rim_position_at_a_node_is_the_node(disk):
    position = rim_positions(disk, 4)
    np.testing.assert_allclose(position[0], [R, 0.0], atol=1e-12)


def test_rim_positions_about_custom_center():
    center = np.array([5.0, -3.0])
    mesh = disk_mesh(20.0, 3.0, center=center)
    for given in (None, center):
        positions = rim_positions(mesh, 12, angle_offset_deg=7.5, center=given)
        relative = positions - center
        angles = np.degrees(np.arctan2(relative[:, 1], relative[:, 0]))
        expected = 7.5 + 30.0 * np.arange(12)
        np.testing.assert_allclose(np.mod(angles - expected + 180, 360) - 180, 0.0, atol=1e-9)
        assert np.all(project_to_boundary(mesh, positions).distance < 1e-9)


@pytest.mark.parametrize("count", [0, -3, 2.5])
def test_rim_positions_invalid_count(disk, count):
    with pytest.raises(ValueError, match="fibre count"):
        rim_positions(disk, count)


def test_rim_positions_center_outside(disk):
    with pytest.raises(ValueError, match="center"):
        rim_positions(disk, 8, center=(100.0, 0.0))


# --------------------------------------------------------------------------- normals, move_inward


def test_inward_normals_point_to_centre(disk):
    points = disk.nodes[disk.boundary_nodes]
    normals = inward_normals(disk, points)
    np.testing.assert_allclose(np.hypot(*normals.T), 1.0, rtol=1e-12)
    radial = -points / np.hypot(*points.T)[:, None]
    assert np.all((normals * radial).sum(1) > 0.999)
    # Between nodes: the edge normal, also radial on a regular polygon.
    mid = rim_positions(disk, 10, angle_offset_deg=1.0)
    radial = -mid / np.hypot(*mid.T)[:, None]
    edge_normals = inward_normals(disk, mid)
    assert np.all((edge_normals * radial).sum(1) > 0.99)


def test_inward_normal_on_square_edge():
    mesh = Mesh([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]], [[0, 1, 2], [0, 2, 3]])
    normals = inward_normals(mesh, [[1.0, 0.0], [2.0, 1.5], [0.5, 2.0], [0.0, 0.3]])
    np.testing.assert_allclose(normals, [[0, 1], [-1, 0], [0, -1], [1, 0]], atol=1e-12)
    corner = inward_normals(mesh, [[2.0, 2.0]])
    np.testing.assert_allclose(corner, [[-math.sqrt(0.5), -math.sqrt(0.5)]], atol=1e-12)


def test_move_inward_by_depth(disk):
    points = disk.nodes[disk.boundary_nodes]
    moved = move_inward(disk, points, 2.5)
    np.testing.assert_allclose(np.hypot(*(moved - points).T), 2.5, rtol=1e-12)
    np.testing.assert_allclose(np.hypot(*moved.T), R - 2.5, rtol=1e-9)
    assert np.all(locate_points(disk, moved).outside_distance == 0)
    depths = np.linspace(0.5, 3.0, len(points))
    moved = move_inward(disk, points, depths)
    np.testing.assert_allclose(np.hypot(*(moved - points).T), depths, rtol=1e-12)
    np.testing.assert_array_equal(move_inward(disk, points, 0.0), points)


# --------------------------------------------------------------------------- point_sources


def test_point_sources_interior(disk):
    rng = np.random.default_rng(0)
    r = 39.0 * np.sqrt(rng.uniform(size=50))
    phi = rng.uniform(0, 2 * np.pi, 50)
    points = np.stack([r * np.cos(phi), r * np.sin(phi)], 1)
    sources = point_sources(disk, points)
    assert sources.count == 50 and sources.indices.shape == (50, 3)
    np.testing.assert_allclose(sources.weights.sum(1), 1.0, atol=1e-14)
    assert np.all(sources.weights >= 0)
    reproduced = sources.positions(disk.nodes)
    np.testing.assert_allclose(reproduced, points, atol=1e-12)
    # Applied to the coordinate fields, the sources read their positions.
    np.testing.assert_allclose(sources(disk.nodes.T), points.T, atol=1e-12)


def test_point_source_on_circle_between_nodes(disk):
    point, (a, b) = rim_midpoint(disk)
    assert project_to_boundary(disk, [point]).distance[0] > 0  # outside the polygon
    source = point_sources(disk, [point])
    row = dense(source, disk.n_nodes)[0]
    assert row[a] == pytest.approx(0.5, abs=1e-12) and row[b] == pytest.approx(0.5, abs=1e-12)
    assert row.sum() == pytest.approx(1.0, abs=1e-14)


def test_point_source_outside_raises(disk):
    with pytest.raises(ValueError, match=r"source 1 at \(0, -46\) mm is outside the mesh"):
        point_sources(disk, [[0.0, 0.0], [0.0, -46.0]])


def test_point_source_rim_tolerance_is_a_quarter_edge(disk):
    edge = 2 * R * math.sin(math.pi / len(disk.boundary_nodes))
    point_sources(disk, [[R + 0.2 * edge, 0.0]])
    with pytest.raises(ValueError, match="outside the mesh"):
        point_sources(disk, [[R + 0.3 * edge, 0.0]])


def test_nirfast_sources_accepted(nirfast):
    sources = point_sources(nirfast.mesh, nirfast.sources)
    assert sources.count == len(nirfast.sources)
    reproduced = sources.positions(nirfast.mesh.nodes)
    # Inside (or within the rim tolerance): read at the position or its projection.
    assert np.all(np.hypot(*(reproduced - nirfast.sources).T) < 0.5)


# --------------------------------------------------------------------------- boundary_detectors


def test_detectors_on_rim(disk):
    positions = rim_positions(disk, 16, angle_offset_deg=11.25)
    detectors = boundary_detectors(disk, positions)
    matrix = dense(detectors, disk.n_nodes)
    assert matrix.shape == (16, disk.n_nodes)
    assert np.all(matrix[:, ~disk.is_boundary_node] == 0)
    np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-14)
    assert np.all(matrix >= 0)
    # On a boundary edge: linear interpolation along the edge reproduces the position.
    np.testing.assert_allclose(matrix @ disk.nodes, positions, atol=1e-9)


def test_detector_on_circle_between_nodes(disk):
    point, (a, b) = rim_midpoint(disk)
    row = dense(boundary_detectors(disk, [point]), disk.n_nodes)[0]
    assert row[a] == pytest.approx(0.5, abs=1e-12) and row[b] == pytest.approx(0.5, abs=1e-12)


def test_detector_at_boundary_node_reads_it(disk):
    for k in disk.boundary_nodes[::9]:
        row = dense(boundary_detectors(disk, disk.nodes[k]), disk.n_nodes)[0]
        assert row[k] == pytest.approx(1.0, abs=1e-12)
        assert np.abs(np.delete(row, k)).max() < 1e-12


def test_detector_just_inside_reads_nearby_boundary(disk):
    k = node_at(disk, (R, 0.0))
    inside = move_inward(disk, disk.nodes[k], 0.1)
    row = dense(boundary_detectors(disk, inside), disk.n_nodes)[0]
    assert row[k] > 0.9
    assert np.all(row[~disk.is_boundary_node] == 0)


def test_detector_deep_inside_raises(disk):
    with pytest.raises(ValueError, match=r"detector 1 at \(0, 31\) mm is .* inside the boundary"):
        boundary_detectors(disk, [[R, 0.0], [0.0, R - 10.0]])


def test_detector_outside_raises(disk):
    with pytest.raises(ValueError, match=r"detector 0 .* outside the mesh"):
        boundary_detectors(disk, [[R + 5.0, 0.0]])


def test_nirfast_detectors_accepted(nirfast):
    mesh = nirfast.mesh
    detectors = boundary_detectors(mesh, nirfast.detectors)
    matrix = dense(detectors, mesh.n_nodes)
    assert matrix.shape == (len(nirfast.detectors), mesh.n_nodes) == (16, mesh.n_nodes)
    assert np.all(matrix[:, ~mesh.is_boundary_node] == 0)
    np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-14)
    # Each detector reads boundary nodes next to it.
    for d, row in enumerate(matrix):
        used = mesh.nodes[np.flatnonzero(row)]
        assert np.all(np.hypot(*(used - nirfast.detectors[d]).T) < 5.0)


# --------------------------------------------------------------------------- WeightedGather


def test_columns_is_the_transpose(disk):
    positions = np.array([[0.0, 0.0], [10.0, -5.0], [-20.0, 30.0], [R, 0.0]])
    for gather in (point_sources(disk, positions), boundary_detectors(disk, rim_positions(disk, 5))):
        a = dense(gather, disk.n_nodes)  # (P, N)
        columns = np.asarray(gather.columns(disk.n_nodes, jnp.float64))
        assert columns.shape == (disk.n_nodes, gather.count)
        np.testing.assert_array_equal(columns, a.T)


def test_columns_accumulates_repeated_indices():
    gather = WeightedGather(
        indices=np.array([[0, 0, 2], [1, 2, 3]], np.int32),
        weights=np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]]),
    )
    expected = np.array([[0.75, 0.0, 0.25, 0.0], [0.0, 0.1, 0.2, 0.7]])  # (P, N)
    x = np.array([1.0, 10.0, 100.0, 1000.0])
    np.testing.assert_allclose(gather(x), expected @ x, rtol=1e-14)
    np.testing.assert_allclose(dense(gather, 4), expected, rtol=1e-14)
    np.testing.assert_allclose(gather.columns(4, jnp.float64), expected.T, rtol=1e-14)
    # Complex fields: applied to real and imaginary parts alike.
    z = x + 1j * x[::-1]
    np.testing.assert_allclose(gather(z), expected @ z, rtol=1e-14)
    assert gather.columns(4, jnp.complex128).dtype == jnp.complex128


# --------------------------------------------------------------------------- MeasurementLayout


def test_ring_layout():
    layout = MeasurementLayout.ring(16)
    assert layout.shape == (16, 15)
    for s in range(16):
        assert layout.detector_index[s].tolist() == [d for d in range(16) if d != s]
    assert layout.active.all() and layout.active.shape == (16, 15)


def test_ring_with_inactive_fibres():
    layout = MeasurementLayout.ring(16, active_fibres=range(0, 16, 2))
    assert layout.shape == (16, 15)
    assert layout.active.sum() == 8 * 7
    sources = np.arange(16)[:, None]
    expected = (sources % 2 == 0) & (layout.detector_index % 2 == 0)
    np.testing.assert_array_equal(layout.active, expected)


@pytest.mark.parametrize("fibres", [[16], [-1], [0, 3, 20]])
def test_ring_invalid_active_fibres(fibres):
    with pytest.raises(ValueError, match=r"active fibre index -?\d+ is out of range \(0\.\.15\)"):
        MeasurementLayout.ring(16, active_fibres=fibres)


@pytest.mark.parametrize("n", [1, 0, -4, 2.5])
def test_ring_invalid_count(n):
    with pytest.raises(ValueError, match="at least 2 fibres"):
        MeasurementLayout.ring(n)


def test_from_pairs_reproduces_nirfast_link(nirfast):
    assert nirfast.link.shape == (240, 2) and nirfast.link_active.all()
    layout = MeasurementLayout.from_pairs(nirfast.link, len(nirfast.sources), nirfast.link_active)
    assert layout.shape == (16, 15)
    assert layout.active.all()
    for s in range(16):
        np.testing.assert_array_equal(layout.detector_index[s], nirfast.link[nirfast.link[:, 0] == s, 1])
    # The fixture is a full ring, each source with the 15 other fibres, listed cyclically
    # from the next fibre on (so the slots are not in `ring(16)`'s order).
    expected = (np.arange(16)[:, None] + np.arange(1, 16)[None]) % 16
    np.testing.assert_array_equal(layout.detector_index, expected)
    ring = MeasurementLayout.ring(16).detector_index
    np.testing.assert_array_equal(np.sort(layout.detector_index, 1), ring)


def test_from_pairs_ragged_and_inactive():
    pairs = [[0, 1], [0, 2], [0, 3], [1, 0], [2, 3], [2, 1]]
    active = [True, False, True, True, True, True]
    layout = MeasurementLayout.from_pairs(pairs, 3, active)
    assert layout.shape == (3, 3)
    np.testing.assert_array_equal(layout.active, [[1, 0, 1], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(layout.detector_index[layout.active], [1, 3, 0, 3, 1])
    np.testing.assert_array_equal(layout.detector_index[0], [1, 2, 3])


@pytest.mark.parametrize("pairs", [[[0, 1], [5, 0]], [[0, -1]]], ids=["source-5", "detector--1"])
def test_from_pairs_rejects_out_of_range(pairs):
    with pytest.raises(ValueError):
        MeasurementLayout.from_pairs(pairs, 2)


def test_select_picks_detector_columns():
    layout = MeasurementLayout.ring(16, active_fibres=[0, 1, 2, 5])
    data = np.random.default_rng(1).normal(size=(3, 16, 16))
    selected = np.asarray(layout.select(jnp.asarray(data)))
    assert selected.shape == (3, 16, 15)
    for b in range(3):
        for s in range(16):
            for k in range(15):
                assert selected[b, s, k] == data[b, s, layout.detector_index[s, k]]
    # The diagonal (source = detector) is never selected.
    assert not np.isin(np.diagonal(data, axis1=1, axis2=2), selected).any()


def test_select_on_ragged_layout():
    layout = MeasurementLayout.from_pairs([[0, 2], [1, 0], [1, 2]], 2)
    data = np.arange(2 * 3, dtype=float).reshape(2, 3)
    np.testing.assert_array_equal(layout.select(data)[layout.active], [2.0, 3.0, 5.0])
