"""The `Mesh` type and the disk generator (`nirst_jax.mesh._mesh`, `nirst_jax.mesh._disk`)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nirst_jax.mesh import Mesh, disk_mesh
from nirst_jax.mesh._mesh import signed_areas

# A unit square split along its diagonal 0-2, both triangles counter-clockwise.
SQUARE_NODES = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
SQUARE_ELEMENTS = [[0, 1, 2], [0, 2, 3]]

# A 2×2 square with a centre node 4, four counter-clockwise fan triangles.
FAN_NODES = [[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0], [1.0, 1.0]]
FAN_ELEMENTS = [[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]]

# A 3×3 square with a 1×1 square hole in the middle (area 8), eight CCW triangles.
FRAME_NODES = [
    [0.0, 0.0], [3.0, 0.0], [3.0, 3.0], [0.0, 3.0],
    [1.0, 1.0], [2.0, 1.0], [2.0, 2.0], [1.0, 2.0],
]  # fmt: skip
FRAME_ELEMENTS = [
    [0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5],
    [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7],
]  # fmt: skip


def shoelace(mesh: Mesh) -> float:
    """Σ over the boundary edges (a, b) of x_a y_b − x_b y_a (twice the enclosed area)."""
    a = mesh.nodes[mesh.boundary_edges[:, 0]]
    b = mesh.nodes[mesh.boundary_edges[:, 1]]
    return float((a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1]).sum())


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "nodes, elements, match",
    [
        (np.zeros((4, 3)), SQUARE_ELEMENTS, r"nodes must have shape \(N, 2\), got \(4, 3\)"),
        (np.zeros(8), SQUARE_ELEMENTS, r"nodes must have shape \(N, 2\), got \(8,\)"),
        (SQUARE_NODES, [[0, 1, 2, 3]], r"elements must have shape \(M, 3\), got \(1, 4\)"),
        (SQUARE_NODES, [0, 1, 2], r"elements must have shape \(M, 3\), got \(3,\)"),
        (SQUARE_NODES, np.zeros((0, 3), int), "at least 3 nodes and 1 element"),
    ],
    ids=["nodes-3-columns", "nodes-1d", "elements-4-columns", "elements-1d", "no-elements"],
)
def test_rejects_wrong_shapes(nodes, elements, match):
    with pytest.raises(ValueError, match=match):
        Mesh(nodes, elements)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite_coordinate(bad):
    nodes = np.array(SQUARE_NODES)
    nodes[2, 1] = bad
    with pytest.raises(ValueError, match=r"not finite at nodes 2$"):
        Mesh(nodes, SQUARE_ELEMENTS)


@pytest.mark.parametrize("index", [4, 7, -1])
def test_rejects_out_of_range_index(index):
    with pytest.raises(ValueError, match=r"elements 1 reference nodes outside 0\.\.3"):
        Mesh(SQUARE_NODES, [[0, 1, 2], [0, 2, index]])


def test_rejects_non_integer_indices():
    with pytest.raises(ValueError, match="integers"):
        Mesh(SQUARE_NODES, [[0, 1, 2], [0, 2, 2.5]])


def test_accepts_integral_float_indices():
    mesh = Mesh(SQUARE_NODES, np.array(SQUARE_ELEMENTS, float))
    np.testing.assert_array_equal(mesh.elements, SQUARE_ELEMENTS)
    assert mesh.elements.dtype == np.int32


def test_rejects_repeated_node_in_element():
    with pytest.raises(ValueError, match=r"elements 1 repeat a node"):
        Mesh(SQUARE_NODES, [[0, 1, 2], [0, 3, 3], [0, 2, 3]])


def test_rejects_collinear_element():
    # Nodes 0, 1, 2 on the x axis; element 1 is the collinear one.
    nodes = [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [1.0, 1.0]]
    with pytest.raises(ValueError, match=r"elements 1 are degenerate"):
        Mesh(nodes, [[0, 1, 3], [0, 1, 2], [1, 2, 3]])


def test_rejects_inverted_element_among_ccw_ones():
    elements = np.array(FAN_ELEMENTS)
    elements[2] = elements[2, [1, 0, 2]]  # clockwise
    with pytest.raises(ValueError, match=r"elements 2 are inverted"):
        Mesh(FAN_NODES, elements)


def test_rejects_inverted_minority_in_clockwise_mesh():
    # Three clockwise elements and one counter-clockwise: the CCW one is the odd one out.
    elements = np.array(FAN_ELEMENTS)[:, [0, 2, 1]]
    elements[0] = FAN_ELEMENTS[0]
    with pytest.raises(ValueError, match=r"elements 0 are inverted"):
        Mesh(FAN_NODES, elements)


def test_rejects_folded_neighbours():
    # Both counter-clockwise, both above their shared edge (0, 1): the second overlaps the first.
    nodes = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.4, 0.3]]
    with pytest.raises(ValueError, match=r"elements 0, 1 overlap: .* edge \(0, 1\)"):
        Mesh(nodes, [[0, 1, 2], [0, 1, 3]])


def test_rejects_duplicate_element_in_another_order():
    # Element 2 is element 0 with its nodes rotated (same orientation).
    with pytest.raises(ValueError, match=r"elements 0, 2 are duplicates"):
        Mesh(SQUARE_NODES, [[0, 1, 2], [0, 2, 3], [1, 2, 0]])


def test_rejects_duplicate_element_with_opposite_orientation():
    # Same three nodes reversed: rejected either as inverted or as a duplicate.
    with pytest.raises(ValueError, match=r"elements .*(inverted|duplicates)"):
        Mesh(FAN_NODES, FAN_ELEMENTS + [[4, 1, 0]])


def test_rejects_unreferenced_node():
    nodes = SQUARE_NODES + [[5.0, 5.0]]
    with pytest.raises(ValueError, match=r"nodes 4 are not referenced"):
        Mesh(nodes, SQUARE_ELEMENTS)


def test_rejects_coincident_nodes():
    # Node 4 sits on node 2; element 1 uses it instead of 2 (a crack along the diagonal).
    nodes = SQUARE_NODES + [[1.0, 1.0]]
    with pytest.raises(ValueError, match=r"nodes 2, 4 are coincident"):
        Mesh(nodes, [[0, 1, 2], [0, 4, 3]])


def test_rejects_edge_shared_by_three_elements():
    nodes = [[0.0, 0.0], [1.0, 0.0], [0.5, 1.0], [0.5, -1.0], [0.5, 2.0]]
    elements = [[0, 1, 2], [1, 0, 3], [0, 1, 4]]  # all CCW, all on edge 0-1
    assert (signed_areas(np.array(nodes), np.array(elements)) > 0).all()
    with pytest.raises(ValueError, match=r"edge \(0, 1\) is shared by more than two"):
        Mesh(nodes, elements)


def test_error_lists_at_most_five_items():
    nodes = FAN_NODES + [[10.0 + k, 10.0] for k in range(7)]
    with pytest.raises(ValueError, match=r"nodes 5, 6, 7, 8, 9 \(and 2 more\) are not referenced"):
        Mesh(nodes, FAN_ELEMENTS)


# --------------------------------------------------------------------------- orientation, areas


def test_clockwise_mesh_is_stored_counter_clockwise():
    clockwise = np.array(FAN_ELEMENTS)[:, [0, 2, 1]]
    assert (signed_areas(np.array(FAN_NODES), clockwise) < 0).all()
    mesh = Mesh(FAN_NODES, clockwise)
    assert (signed_areas(mesh.nodes, mesh.elements) > 0).all()
    # Same triangles, only reordered.
    np.testing.assert_array_equal(np.sort(mesh.elements, 1), np.sort(clockwise, 1))
    np.testing.assert_allclose(mesh.areas, 1.0, rtol=1e-15)
    assert shoelace(mesh) == pytest.approx(2 * 4.0, rel=1e-14)


def test_areas_positive_and_sum_to_domain_area():
    mesh = Mesh(FRAME_NODES, FRAME_ELEMENTS)
    assert (mesh.areas > 0).all()
    assert mesh.areas.sum() == pytest.approx(9.0 - 1.0, rel=1e-14)
    np.testing.assert_allclose(mesh.areas, [1.5, 0.5] * 4, rtol=1e-14)


def test_counts_and_dtypes():
    mesh = Mesh(SQUARE_NODES, SQUARE_ELEMENTS)
    assert (mesh.n_nodes, mesh.n_elements) == (4, 2)
    assert mesh.nodes.dtype == np.float64 and mesh.elements.dtype == np.int32
    assert "n_nodes=4" in repr(mesh) and "n_elements=2" in repr(mesh)


def test_input_is_copied():
    nodes = np.array(SQUARE_NODES)
    mesh = Mesh(nodes, SQUARE_ELEMENTS)
    nodes[0] = [9.0, 9.0]
    np.testing.assert_array_equal(mesh.nodes[0], [0.0, 0.0])


# --------------------------------------------------------------------------- boundary


def test_boundary_edges_of_square():
    mesh = Mesh(SQUARE_NODES, SQUARE_ELEMENTS)
    assert mesh.boundary_edges.shape == (4, 2)
    # The diagonal 0-2 is interior.
    undirected = {tuple(sorted(e)) for e in mesh.boundary_edges.tolist()}
    assert undirected == {(0, 1), (1, 2), (2, 3), (0, 3)}
    # Counter-clockwise around the square: each directed edge goes to the next corner.
    assert {tuple(e) for e in mesh.boundary_edges.tolist()} == {(0, 1), (1, 2), (2, 3), (3, 0)}
    assert shoelace(mesh) == pytest.approx(2.0, rel=1e-14)
    np.testing.assert_array_equal(mesh.boundary_nodes, [0, 1, 2, 3])


@pytest.mark.parametrize(
    "nodes, elements",
    [(SQUARE_NODES, SQUARE_ELEMENTS), (FAN_NODES, FAN_ELEMENTS), (FRAME_NODES, FRAME_ELEMENTS)],
    ids=["square", "fan", "frame-with-hole"],
)
def test_boundary_orientation_and_owners(nodes, elements):
    mesh = Mesh(nodes, elements)
    # Outer boundary CCW, holes CW: the shoelace sum is twice the domain area.
    assert shoelace(mesh) == pytest.approx(2 * mesh.areas.sum(), rel=1e-14)
    assert len(mesh.boundary_edge_elements) == len(mesh.boundary_edges)
    for (a, b), owner in zip(mesh.boundary_edges.tolist(), mesh.boundary_edge_elements.tolist()):
        element = mesh.elements[owner].tolist()
        k = element.index(a)
        assert element[(k + 1) % 3] == b  # a → b in the owner's CCW order
    # Every boundary node is the start of exactly one edge and the end of exactly one.
    assert sorted(mesh.boundary_edges[:, 0]) == sorted(mesh.boundary_edges[:, 1])


def test_frame_boundary_includes_hole():
    mesh = Mesh(FRAME_NODES, FRAME_ELEMENTS)
    assert len(mesh.boundary_edges) == 8
    edges = {tuple(e) for e in mesh.boundary_edges.tolist()}
    assert {(0, 1), (1, 2), (2, 3), (3, 0)} <= edges  # outer, CCW
    assert {(5, 4), (6, 5), (7, 6), (4, 7)} <= edges  # hole, CW
    assert mesh.is_boundary_node.all()


def test_fan_boundary_nodes():
    mesh = Mesh(FAN_NODES, FAN_ELEMENTS)
    np.testing.assert_array_equal(mesh.boundary_nodes, [0, 1, 2, 3])
    np.testing.assert_array_equal(mesh.is_boundary_node, [True, True, True, True, False])


# --------------------------------------------------------------------------- immutability, hashing


def test_attributes_cannot_be_assigned():
    mesh = Mesh(SQUARE_NODES, SQUARE_ELEMENTS)
    for name in ("nodes", "elements", "areas", "boundary_edges", "new_attribute", "content_hash"):
        with pytest.raises(AttributeError):
            setattr(mesh, name, None)


def test_arrays_are_read_only():
    mesh = Mesh(SQUARE_NODES, SQUARE_ELEMENTS)
    arrays = {
        "nodes": mesh.nodes,
        "elements": mesh.elements,
        "areas": mesh.areas,
        "boundary_edges": mesh.boundary_edges,
        "boundary_edge_elements": mesh.boundary_edge_elements,
        "boundary_nodes": mesh.boundary_nodes,
        "is_boundary_node": mesh.is_boundary_node,
    }
    for name, array in arrays.items():
        assert not array.flags.writeable, name
        with pytest.raises(ValueError):
            array[0] = array[0]


def test_attributes_cannot_be_deleted():
    mesh = Mesh(SQUARE_NODES, SQUARE_ELEMENTS)
    with pytest.raises(AttributeError):
        del mesh.nodes


def test_content_hash_equal_for_equal_meshes():
    a = Mesh(SQUARE_NODES, SQUARE_ELEMENTS)
    b = Mesh(np.array(SQUARE_NODES, np.float32), np.array(SQUARE_ELEMENTS, np.int64))
    assert a is not b
    assert a.content_hash == b.content_hash
    assert len(a.content_hash) == 64 and int(a.content_hash, 16) >= 0
    assert a == b and hash(a) == hash(b)
    assert {a: "value"}[b] == "value"
    assert len({a, b}) == 1


def test_content_hash_differs_for_perturbed_meshes():
    base = Mesh(SQUARE_NODES, SQUARE_ELEMENTS)
    moved = np.array(SQUARE_NODES)
    moved[1, 0] += 1e-12
    other_split = [[0, 1, 3], [1, 2, 3]]  # same nodes, other diagonal
    variants = [Mesh(moved, SQUARE_ELEMENTS), Mesh(SQUARE_NODES, other_split)]
    hashes = {base.content_hash} | {m.content_hash for m in variants}
    assert len(hashes) == 3
    assert all(m != base for m in variants)
    assert base != "not a mesh"


def test_mesh_is_a_jit_static_argument():
    traces = []

    def scaled(mesh, x):
        traces.append(mesh.n_nodes)
        return x * mesh.n_nodes

    f = jax.jit(scaled, static_argnums=0)
    square = Mesh(SQUARE_NODES, SQUARE_ELEMENTS)
    fan = Mesh(FAN_NODES, FAN_ELEMENTS)
    x = jnp.arange(3.0)
    np.testing.assert_array_equal(f(square, x), 4 * x)
    np.testing.assert_array_equal(f(Mesh(SQUARE_NODES, SQUARE_ELEMENTS), x), 4 * x)
    assert traces == [4]  # an equal mesh reuses the compiled function
    np.testing.assert_array_equal(f(fan, x), 5 * x)
    assert traces == [4, 5]


# --------------------------------------------------------------------------- disk_mesh


@pytest.fixture(scope="module", params=[6.0, 3.0, 1.5])
def disk(request):
    spacing = request.param
    return spacing, disk_mesh(41.0, spacing)


def test_disk_min_angle(disk):
    _, mesh = disk
    assert mesh.min_angle_deg() >= 25.0


def test_disk_max_edge(disk):
    spacing, mesh = disk
    assert mesh.edge_lengths().max() <= spacing * (1 + 1e-9)
    # Not needlessly fine either: the longest edge is a sizeable fraction of the spacing.
    assert mesh.edge_lengths().max() >= 0.7 * spacing


def test_disk_boundary_on_circle(disk):
    _, mesh = disk
    radius = np.hypot(*mesh.nodes[mesh.boundary_nodes].T)
    np.testing.assert_allclose(radius, 41.0, rtol=1e-12)
    # Interior nodes are strictly inside.
    interior = np.hypot(*mesh.nodes[~mesh.is_boundary_node].T)
    assert (interior < 41.0 * (1 - 1e-6)).all()


def test_disk_boundary_is_regular_polygon_with_node_at_angle_zero(disk):
    spacing, mesh = disk
    n = len(mesh.boundary_nodes)
    angles = np.sort(np.mod(np.arctan2(*mesh.nodes[mesh.boundary_nodes].T[::-1]), 2 * np.pi))
    np.testing.assert_allclose(angles, 2 * np.pi * np.arange(n) / n, atol=1e-12)
    # Boundary chords are no longer than the spacing.
    assert 2 * 41.0 * math.sin(math.pi / n) <= spacing * (1 + 1e-9)


def test_disk_area(disk):
    spacing, mesh = disk
    n = len(mesh.boundary_nodes)
    polygon = 0.5 * n * 41.0**2 * math.sin(2 * math.pi / n)
    assert mesh.areas.sum() == pytest.approx(polygon, rel=1e-12)
    # The inscribed polygon misses at most the sagitta segments: θ = 2·asin(h/2R), h ≤ spacing.
    theta = 2 * math.asin(spacing / (2 * 41.0))
    circle = math.pi * 41.0**2
    assert circle * (1 - theta**2 / 6) <= mesh.areas.sum() < circle


def test_disk_mesh_is_valid_and_orientation_consistent(disk):
    _, mesh = disk
    assert (signed_areas(mesh.nodes, mesh.elements) > 0).all()
    assert shoelace(mesh) == pytest.approx(2 * mesh.areas.sum(), rel=1e-12)
    assert len(mesh.boundary_nodes) == len(mesh.boundary_edges)  # one closed loop


def test_disk_node_count_scales_with_inverse_square_spacing():
    counts = {h: disk_mesh(41.0, h).n_nodes for h in (6.0, 3.0, 1.5)}
    assert 3.0 < counts[3.0] / counts[6.0] < 5.0
    assert 3.3 < counts[1.5] / counts[3.0] < 4.7
    # Near-equilateral triangles with mean edge ≈ 0.77 h: about πR² / (√3/2 · (0.77 h)²) nodes.
    for h, n in counts.items():
        expected = math.pi * 41.0**2 / (math.sqrt(3) / 2 * (0.77 * h) ** 2)
        assert 0.6 * expected < n < 1.6 * expected


def test_disk_custom_center():
    center = (5.0, -3.0)
    mesh = disk_mesh(10.0, 2.0, center=center)
    reference = disk_mesh(10.0, 2.0)
    np.testing.assert_allclose(mesh.nodes, reference.nodes + center, atol=1e-12)
    boundary = mesh.nodes[mesh.boundary_nodes] - center
    np.testing.assert_allclose(np.hypot(*boundary.T), 10.0, rtol=1e-12)
    # The node at angle 0 is at centre + (R, 0).
    assert np.min(np.hypot(*(mesh.nodes - (15.0, -3.0)).T)) < 1e-12
    assert mesh.areas.sum() == pytest.approx(reference.areas.sum(), rel=1e-12)


def test_disk_small_radius_and_spacing_equal_to_radius():
    mesh = disk_mesh(4.0, 4.0)
    assert mesh.edge_lengths().max() <= 4.0 * (1 + 1e-9)
    np.testing.assert_allclose(np.hypot(*mesh.nodes[mesh.boundary_nodes].T), 4.0, rtol=1e-12)


@pytest.mark.parametrize(
    "radius, spacing, match",
    [
        (0.0, 1.0, "radius_mm"),
        (-5.0, 1.0, "radius_mm"),
        (np.nan, 1.0, "radius_mm"),
        (np.inf, 1.0, "radius_mm"),
        (10.0, 0.0, "spacing_mm"),
        (10.0, -1.0, "spacing_mm"),
        (10.0, np.nan, "spacing_mm"),
        (10.0, 10.5, "spacing_mm"),
        (10.0, np.inf, "spacing_mm"),
    ],
)
def test_disk_bad_arguments(radius, spacing, match):
    with pytest.raises(ValueError, match=match):
        disk_mesh(radius, spacing)
