"""Point location, boundary projection and pixel-grid interpolation
(`nirst_jax.mesh._locate`, `nirst_jax.mesh._grid`)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nirst_jax.mesh import Mesh, disk_mesh, locate_points, project_to_boundary
from nirst_jax.mesh._grid import GridInterpolation, PixelGrid
from nirst_jax.mesh._locate import inside_mesh, rim_tolerance

R = 41.0


@pytest.fixture(scope="module")
def disk() -> Mesh:
    return disk_mesh(R, 4.0)


def n_rim(mesh: Mesh) -> int:
    return len(mesh.boundary_nodes)


def node_at(mesh: Mesh, point) -> int:
    """Index of the node at `point` (asserting there is one)."""
    distance = np.hypot(*(mesh.nodes - np.asarray(point)).T)
    k = int(np.argmin(distance))
    assert distance[k] < 1e-9
    return k


def random_disk_points(rng, count, r_max):
    r = r_max * np.sqrt(rng.uniform(0, 1, count))
    phi = rng.uniform(0, 2 * np.pi, count)
    return np.stack([r * np.cos(phi), r * np.sin(phi)], 1)


# --------------------------------------------------------------------------- locate_points


def test_locate_interior_points(disk):
    points = random_disk_points(np.random.default_rng(0), 300, 39.0)
    located = locate_points(disk, points)
    assert located.elements.shape == (300,) and located.barycentric.shape == (300, 3)
    w = located.barycentric
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-14)
    corners = disk.nodes[disk.elements[located.elements]]  # (P, 3, 2)
    np.testing.assert_allclose((w[..., None] * corners).sum(1), points, atol=1e-12)
    np.testing.assert_array_equal(located.outside_distance, 0.0)


def test_locate_finds_containing_element(disk):
    # The weights reproduce the point only if the element really contains it; double-check
    # with the unclipped barycentric coordinates computed here.
    points = random_disk_points(np.random.default_rng(1), 100, 40.0)
    located = locate_points(disk, points)
    p = disk.nodes[disk.elements[located.elements]]
    matrix = np.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]], axis=2)  # (P, 2, 2)
    l12 = np.linalg.solve(matrix, (points - p[:, 0])[..., None])[..., 0]
    raw = np.concatenate([1 - l12.sum(1, keepdims=True), l12], 1)
    assert (raw >= -1e-12).all()
    np.testing.assert_allclose(located.barycentric, raw, atol=1e-12)


def test_locate_node_gets_weight_one(disk):
    k = node_at(disk, (R, 0.0))
    located = locate_points(disk, [[R, 0.0]])
    element = disk.elements[located.elements[0]].tolist()
    assert k in element
    assert located.barycentric[0, element.index(k)] == pytest.approx(1.0, abs=1e-12)


def test_locate_far_outside_raises_naming_index(disk):
    with pytest.raises(ValueError, match=r"point 2 at \(100, 0\) mm is outside the mesh \(by 59 mm\)"):
        locate_points(disk, [[0.0, 0.0], [1.0, 1.0], [100.0, 0.0]])
    with pytest.raises(ValueError, match=r"^source 0 at"):
        locate_points(disk, [[0.0, -50.0]], what="source")


def rim_midpoint(mesh: Mesh):
    """Point on the circle halfway between the boundary nodes at angles 0 and 2π/n, its
    distance outside the polygon, the chord midpoint and the two nodes."""
    n = n_rim(mesh)
    half = math.pi / n
    point = R * np.array([math.cos(half), math.sin(half)])
    gap = R * (1 - math.cos(half))
    a = node_at(mesh, (R, 0.0))
    b = node_at(mesh, (R * math.cos(2 * half), R * math.sin(2 * half)))
    return point, gap, point * math.cos(half), (a, b)


def test_locate_just_outside_is_projected(disk):
    point, gap, foot, (a, b) = rim_midpoint(disk)
    assert gap > 0.01
    with pytest.raises(ValueError, match="point 0 .* outside the mesh"):
        locate_points(disk, [point])  # default tolerance 0
    with pytest.raises(ValueError, match="outside the mesh"):
        locate_points(disk, [point], outside_tolerance=0.9 * gap)
    located = locate_points(disk, [point], outside_tolerance=1.1 * gap)
    assert located.outside_distance[0] == pytest.approx(gap, rel=1e-9)
    element = disk.elements[located.elements[0]].tolist()
    assert {a, b} <= set(element)
    w = located.barycentric[0]
    np.testing.assert_allclose(w @ disk.nodes[element], foot, atol=1e-12)
    assert w[element.index(a)] == pytest.approx(0.5, abs=1e-12)
    assert w[element.index(b)] == pytest.approx(0.5, abs=1e-12)


def test_locate_per_point_tolerance(disk):
    point, gap, _, _ = rim_midpoint(disk)
    points = [[0.0, 0.0], point, point]
    with pytest.raises(ValueError, match="point 1 "):
        locate_points(disk, points, outside_tolerance=[0.0, 0.0, 2 * gap])
    located = locate_points(disk, points, outside_tolerance=[0.0, 2 * gap, 2 * gap])
    np.testing.assert_allclose(located.outside_distance, [0.0, gap, gap], rtol=1e-9)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_locate_non_finite_point_raises(disk, bad):
    with pytest.raises(ValueError, match=r"1 is not finite"):
        locate_points(disk, [[0.0, 0.0], [bad, 0.0]])


@pytest.mark.parametrize("shape", [(3,), (2, 3), (2, 2, 2)])
def test_locate_wrong_shape_raises(disk, shape):
    with pytest.raises(ValueError, match="shape"):
        locate_points(disk, np.zeros(shape))


def test_locate_single_point_shape(disk):
    located = locate_points(disk, np.array([1.0, 2.0]))
    assert located.barycentric.shape == (1, 3)


# --------------------------------------------------------------------------- project_to_boundary


def test_project_boundary_nodes_onto_themselves(disk):
    nodes = disk.nodes[disk.boundary_nodes]
    projection = project_to_boundary(disk, nodes)
    np.testing.assert_allclose(projection.distance, 0.0, atol=1e-12)
    np.testing.assert_allclose(projection.points, nodes, atol=1e-12)
    t = projection.edge_parameter
    assert np.all((t < 1e-12) | (t > 1 - 1e-12))
    edges = disk.boundary_edges[projection.edges]
    owner = np.where(t < 0.5, edges[:, 0], edges[:, 1])
    np.testing.assert_array_equal(owner, disk.boundary_nodes)


@pytest.mark.parametrize("rho", [38.0, 40.5, 41.0, 43.0, 60.0])
def test_project_mid_edge_points(disk, rho):
    n = n_rim(disk)
    half = math.pi / n
    direction = np.array([math.cos(half), math.sin(half)])
    projection = project_to_boundary(disk, [rho * direction])
    apothem = R * math.cos(half)
    assert projection.distance[0] == pytest.approx(abs(rho - apothem), rel=1e-12)
    np.testing.assert_allclose(projection.points[0], apothem * direction, atol=1e-12)
    assert projection.edge_parameter[0] == pytest.approx(0.5, abs=1e-12)


def test_project_far_point_to_vertex(disk):
    projection = project_to_boundary(disk, [[100.0, 0.0]])
    assert projection.distance[0] == pytest.approx(59.0, rel=1e-12)
    np.testing.assert_allclose(projection.points[0], [R, 0.0], atol=1e-12)


def test_project_random_points(disk):
    points = random_disk_points(np.random.default_rng(2), 200, 60.0)
    projection = project_to_boundary(disk, points)
    sagitta = R * (1 - math.cos(math.pi / n_rim(disk)))
    radius = np.hypot(*points.T)
    # The polygon lies between the circles of radius R cos(π/n) and R.
    assert np.all(projection.distance <= np.abs(radius - R) + sagitta + 1e-12)
    assert np.all(projection.distance >= np.abs(radius - R) - sagitta - 1e-12)
    # No boundary node is closer than the projection.
    to_nodes = np.hypot(*(points[:, None] - disk.nodes[disk.boundary_nodes][None]).transpose(2, 0, 1))
    assert np.all(projection.distance <= to_nodes.min(1) + 1e-12)
    np.testing.assert_allclose(np.hypot(*(points - projection.points).T), projection.distance, atol=1e-12)
    # Projections lie on their edge.
    a = disk.nodes[disk.boundary_edges[projection.edges, 0]]
    b = disk.nodes[disk.boundary_edges[projection.edges, 1]]
    t = projection.edge_parameter[:, None]
    np.testing.assert_allclose(a + t * (b - a), projection.points, atol=1e-12)
    assert np.all((projection.edge_parameter >= 0) & (projection.edge_parameter <= 1))


def test_inside_mesh_and_rim_tolerance(disk):
    point, gap, _, _ = rim_midpoint(disk)
    edge = 2 * R * math.sin(math.pi / n_rim(disk))
    np.testing.assert_allclose(rim_tolerance(disk, [point, [0.0, 0.0]]), 0.25 * edge, rtol=1e-12)
    assert gap < 0.01 * edge  # the circle is within the 1 % tolerance
    inside = inside_mesh(disk, [[0.0, 0.0], point, [R + 0.02 * edge, 0.0], [0.0, 50.0]])
    np.testing.assert_array_equal(inside, [True, True, False, False])


# --------------------------------------------------------------------------- PixelGrid


def test_default_pixel_grid():
    grid = PixelGrid()
    assert (grid.size, grid.low, grid.high) == (100, -41.0, 41.0)
    assert grid.pixel_mm == pytest.approx(0.82, rel=1e-14)
    assert grid.axis.shape == (100,)
    assert grid.axis[0] == pytest.approx(-40.59, abs=1e-12)
    assert grid.axis[-1] == pytest.approx(40.59, abs=1e-12)
    np.testing.assert_allclose(np.diff(grid.axis), 0.82, rtol=1e-12)
    centers = grid.centers()
    assert centers.shape == (100, 100, 2)
    # [iy, ix] → (x, y): x varies along the columns, y along the rows.
    np.testing.assert_allclose(centers[3, 7], [-40.59 + 7 * 0.82, -40.59 + 3 * 0.82], atol=1e-12)


def test_custom_pixel_grid():
    grid = PixelGrid(size=4, low=0.0, high=2.0)
    np.testing.assert_allclose(grid.axis, [0.25, 0.75, 1.25, 1.75], atol=1e-15)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 1}, "grid size"),
        ({"size": 0}, "grid size"),
        ({"size": -4}, "grid size"),
        ({"size": 2.5}, "grid size"),
        ({"low": 1.0, "high": 1.0}, "low < high"),
        ({"low": 2.0, "high": -2.0}, "low < high"),
        ({"low": np.nan}, "low < high"),
        ({"high": np.nan}, "low < high"),
    ],
)
def test_pixel_grid_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PixelGrid(**kwargs)


def test_pixel_grid_rejects_infinite_extent():
    with pytest.raises(ValueError):
        PixelGrid(size=10, low=-np.inf, high=41.0)


def test_pixel_grid_integral_float_size(disk):
    try:
        grid = PixelGrid(size=10.0)
    except ValueError:
        return  # rejecting it is fine too
    interp = GridInterpolation.build(disk, grid)
    assert interp.mask.shape == (10, 10)


# --------------------------------------------------------------------------- GridInterpolation


def linear(points):
    points = np.asarray(points)
    return 0.3 * points[..., 0] - 0.7 * points[..., 1] + 2.0


@pytest.fixture(scope="module")
def fine():
    mesh = disk_mesh(R, 3.0)
    return mesh, GridInterpolation.build(mesh, PixelGrid())


@pytest.fixture(scope="module")
def coarse():
    mesh = disk_mesh(R, 4.0)
    return mesh, GridInterpolation.build(mesh, PixelGrid(size=20))


def test_mask_is_the_analytic_disk(fine):
    _, interp = fine
    centers = PixelGrid().centers()
    expected = np.hypot(centers[..., 0], centers[..., 1]) <= R
    assert interp.mask.shape == (100, 100) and interp.mask.dtype == bool
    np.testing.assert_array_equal(interp.mask, expected)
    assert interp.size == 100


def test_nodes_to_image_reproduces_linear(fine):
    mesh, interp = fine
    image = np.asarray(interp.nodes_to_image(linear(mesh.nodes)))
    assert image.shape == (100, 100)
    expected = linear(PixelGrid().centers())
    np.testing.assert_allclose(image[interp.mask], expected[interp.mask], rtol=0, atol=1e-12)
    assert np.all(image[~interp.mask] == 0.0)


def four_neighbours_inside(mesh: Mesh, grid: PixelGrid, mask: np.ndarray) -> np.ndarray:
    u = (mesh.nodes - grid.low) / grid.pixel_mm - 0.5
    i0 = np.floor(u).astype(int)
    ok = np.ones(mesh.n_nodes, bool)
    for dy in (0, 1):
        for dx in (0, 1):
            ix, iy = i0[:, 0] + dx, i0[:, 1] + dy
            valid = (ix >= 0) & (ix < grid.size) & (iy >= 0) & (iy < grid.size)
            ok &= valid
            ok[valid] &= mask[iy[valid], ix[valid]]
    return ok


def test_image_to_nodes_reproduces_linear(fine):
    mesh, interp = fine
    grid = PixelGrid()
    image = np.where(interp.mask, linear(grid.centers()), 0.0)
    values = np.asarray(interp.image_to_nodes(image))
    assert values.shape == (mesh.n_nodes,)
    ok = four_neighbours_inside(mesh, grid, interp.mask)
    assert ok.mean() > 0.8  # not a vacuous check
    np.testing.assert_allclose(values[ok], linear(mesh.nodes[ok]), rtol=0, atol=1e-12)
    # Elsewhere the mask's zeros do not bleed in: values are near the linear function,
    # within the variation of f over a pixel diagonal (|∇f| · √2 Δ).
    slope = math.hypot(0.3, 0.7)
    assert np.all(np.abs(values - linear(mesh.nodes)) <= slope * math.sqrt(2) * grid.pixel_mm + 1e-12)


def test_constant_image_maps_to_constant(fine):
    mesh, interp = fine
    image = np.where(interp.mask, 3.25, 0.0)
    np.testing.assert_allclose(interp.image_to_nodes(image), 3.25, rtol=1e-13)
    np.testing.assert_allclose(
        interp.nodes_to_image(np.full(mesh.n_nodes, 3.25)), image, rtol=1e-13, atol=0
    )


def test_operators_are_linear(coarse):
    mesh, interp = coarse
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, mesh.n_nodes))
    np.testing.assert_allclose(
        interp.nodes_to_image(2.0 * a - 0.5 * b),
        2.0 * interp.nodes_to_image(a) - 0.5 * interp.nodes_to_image(b),
        atol=1e-12,
    )
    p, q = rng.normal(size=(2, 20, 20))
    np.testing.assert_allclose(
        interp.image_to_nodes(2.0 * p - 0.5 * q),
        2.0 * interp.image_to_nodes(p) - 0.5 * interp.image_to_nodes(q),
        atol=1e-12,
    )


def test_batch_shapes(fine):
    mesh, interp = fine
    values = np.random.default_rng(4).normal(size=(2, 3, mesh.n_nodes))
    images = interp.nodes_to_image(values)
    assert images.shape == (2, 3, 100, 100)
    np.testing.assert_allclose(images[1, 2], interp.nodes_to_image(values[1, 2]), atol=1e-14)
    back = interp.image_to_nodes(images)
    assert back.shape == (2, 3, mesh.n_nodes)
    np.testing.assert_allclose(back[0, 1], interp.image_to_nodes(images[0, 1]), atol=1e-14)


@pytest.mark.parametrize("shape", [(100,), (99, 100), (2, 100, 99), (100 * 100,)])
def test_wrong_image_shape_raises(fine, shape):
    _, interp = fine
    with pytest.raises(ValueError, match=r"image must end in \(100, 100\)"):
        interp.image_to_nodes(np.zeros(shape))


def test_jit_and_vmap(coarse):
    mesh, interp = coarse
    values = np.random.default_rng(5).normal(size=(4, mesh.n_nodes))
    eager = interp.nodes_to_image(values)
    # (`jax.jit(interp.nodes_to_image)` itself fails: jit hashes the bound method, i.e. the
    # module, whose numpy fields are unhashable; close over it or pass it as an argument.)
    jitted = jax.jit(lambda v: interp.nodes_to_image(v))
    np.testing.assert_allclose(jitted(values), eager, atol=1e-14)
    np.testing.assert_allclose(eqx.filter_jit(interp.nodes_to_image)(values), eager, atol=1e-14)
    # The module itself as a (pytree) argument of jit.
    through = jax.jit(lambda g, v: g.image_to_nodes(g.nodes_to_image(v)))(interp, values)
    np.testing.assert_allclose(through, interp.image_to_nodes(eager), atol=1e-14)
    np.testing.assert_allclose(jax.vmap(interp.nodes_to_image)(values), eager, atol=1e-14)
    np.testing.assert_allclose(
        jax.vmap(interp.image_to_nodes)(eager), interp.image_to_nodes(eager), atol=1e-14
    )


def test_grad_equals_column_sums(coarse):
    mesh, interp = coarse
    n = mesh.n_nodes
    # Dense matrices built column by column from unit vectors.
    to_image = np.asarray(interp.nodes_to_image(np.eye(n))).reshape(n, -1).T  # (P, N)
    to_nodes = np.asarray(interp.image_to_nodes(np.eye(400).reshape(400, 20, 20))).T  # (N, P)
    assert to_image.shape == (400, n) and to_nodes.shape == (n, 400)
    x = jnp.asarray(np.random.default_rng(6).normal(size=n))
    g = jax.grad(lambda v: interp.nodes_to_image(v).sum())(x)
    np.testing.assert_allclose(g, to_image.sum(0), atol=1e-12)
    image = jnp.asarray(np.random.default_rng(7).normal(size=(20, 20)))
    h = jax.grad(lambda im: interp.image_to_nodes(im).sum())(image)
    np.testing.assert_allclose(h.reshape(-1), to_nodes.sum(0), atol=1e-12)
    # Rows of both maps are partitions of unity (on the mask for to_image).
    np.testing.assert_allclose(to_image.sum(1), interp.mask.reshape(-1).astype(float), atol=1e-12)
    np.testing.assert_allclose(to_nodes.sum(1), 1.0, atol=1e-12)
    assert np.all(to_nodes[:, ~interp.mask.reshape(-1)] == 0.0)


def test_grid_not_covering_mesh_raises(disk):
    with pytest.raises(ValueError, match="does not cover the mesh"):
        GridInterpolation.build(disk, PixelGrid(size=10, low=0.0, high=5.0))
