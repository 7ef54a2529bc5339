"""The FEM system and solver against an independent SciPy implementation on NIRFAST's mesh.

The reference below assembles the same weak form from scratch by numerical quadrature (a
degree-4 rule on triangles, 2-point Gauss on boundary edges; both exact for these polynomial
integrands), builds point sources by its own element search, and solves with SuperLU. It
shares no code with `nirst_jax.physics` beyond the mesh arrays read from NIRFAST's files.
"""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from nirst_jax import read_nirfast
from nirst_jax.physics import DiffusionFEM, boundary_factor

FIXTURE = Path(__file__).parent / "fixtures" / "nirfast" / "circle2000_86_stnd"
C0_MM_PER_S = 299_792_458e3

# Strang–Fix 6-point rule, exact to degree 4: (barycentric point, weight / area).
_A, _B = 0.445948490915965, 0.091576213509771
_QUADRATURE = [
    (p, 0.223381589678011) for p in [(_A, _A, 1 - 2 * _A), (_A, 1 - 2 * _A, _A), (1 - 2 * _A, _A, _A)]
] + [(p, 0.109951743655322) for p in [(_B, _B, 1 - 2 * _B), (_B, 1 - 2 * _B, _B), (1 - 2 * _B, _B, _B)]]
_GAUSS_2 = [(0.5 - 0.5 / np.sqrt(3), 0.5), (0.5 + 0.5 / np.sqrt(3), 0.5)]


def _reference_matrix(nodes, elements, boundary_edges, mua, kappa, robin, wave_number):
    n = len(nodes)
    p = nodes[elements]  # (M, 3, 2)
    jac = np.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]], axis=2)  # columns: edge vectors
    area = np.abs(np.linalg.det(jac)) / 2
    grads = np.array([[-1.0, -1.0], [1.0, 0.0], [0.0, 1.0]]) @ np.linalg.inv(jac)  # (M, 3, 2)
    local = np.zeros((len(elements), 3, 3), complex)
    for bary, weight in _QUADRATURE:
        phi = np.array(bary)
        k_q = kappa[elements] @ phi
        a_q = mua[elements] @ phi + 1j * wave_number
        gram = np.einsum("mia,mja->mij", grads, grads)
        local += (weight * area)[:, None, None] * (k_q[:, None, None] * gram + a_q[:, None, None] * np.outer(phi, phi))
    edge_local = np.zeros((len(boundary_edges), 2, 2))
    length = np.linalg.norm(nodes[boundary_edges[:, 1]] - nodes[boundary_edges[:, 0]], axis=1)
    for t, weight in _GAUSS_2:
        phi = np.array([1 - t, t])
        edge_local += (weight * length * (robin[boundary_edges] @ phi))[:, None, None] * np.outer(phi, phi)
    rows = np.concatenate([np.repeat(elements, 3, axis=1).ravel(), np.repeat(boundary_edges, 2, axis=1).ravel()])
    cols = np.concatenate([np.tile(elements, (1, 3)).ravel(), np.tile(boundary_edges, (1, 2)).ravel()])
    vals = np.concatenate([local.ravel(), edge_local.ravel()])
    return sp.csc_matrix((vals, (rows, cols)), shape=(n, n))


def _reference_point_source(nodes, elements, point):
    p = nodes[elements]
    t = np.linalg.solve(np.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]], axis=2), (point - p[:, 0])[..., None])[..., 0]
    bary = np.column_stack([1 - t.sum(1), t])
    holding = np.flatnonzero((bary >= -1e-12).all(1))
    assert holding.size, f"{point} is outside the mesh"
    q = np.zeros(len(nodes))
    q[elements[holding[0]]] = bary[holding[0]]
    return q


@pytest.fixture(scope="module")
def nirfast_problem():
    data = read_nirfast(FIXTURE)
    mesh = data.mesh
    mua, kappa, ri = data.param.T
    # Some heterogeneity, so that nodal coefficients are exercised.
    radius = np.hypot(*mesh.nodes.T)
    mua = mua * (1 + 0.5 * (radius < 15))
    kappa = kappa * (1 - 0.3 * (mesh.nodes[:, 0] > 10))
    sources = data.sources * (1 - 2.0 / np.hypot(*data.sources.T))[:, None]  # 2 mm inside
    rhs = np.stack([_reference_point_source(mesh.nodes, mesh.elements, s) for s in sources[:5]], axis=1)
    return mesh, mua, kappa, float(ri[0]), rhs


@pytest.mark.parametrize("frequency_hz", [0.0, pytest.param(100e6, marks=pytest.mark.slow)])
def test_fields_match_an_independent_scipy_fem(nirfast_problem, frequency_hz):
    mesh, mua, kappa, n, rhs = nirfast_problem
    robin = np.full(mesh.n_nodes, 1 / (2 * float(boundary_factor(n))))
    wave_number = 2 * np.pi * frequency_hz * n / C0_MM_PER_S
    reference = _reference_matrix(mesh.nodes, mesh.elements, mesh.boundary_edges, mua, kappa, robin, wave_number)
    if frequency_hz == 0:
        reference = sp.csc_matrix(np.real(reference.toarray()))
    expected = spla.spsolve(reference, rhs)

    fem = DiffusionFEM.from_mesh(mesh)
    values = fem.system_values(
        jnp.asarray(mua), jnp.asarray(kappa), jnp.asarray(robin), wave_number if frequency_hz else None
    )
    ours = sp.csc_matrix((np.asarray(values), (fem.pattern.rows, fem.pattern.cols)), shape=reference.shape)
    assert abs(ours - reference).max() <= 1e-12 * abs(reference).max()

    fields = np.asarray(fem.solve(values, jnp.asarray(rhs)))
    # Every node, including those far from the sources, to near machine precision.
    assert np.all(np.abs(fields - expected) <= 1e-9 * np.abs(expected))


def test_nodal_sensitivity_matrices_match_the_reference_assembly(nirfast_problem):
    """∂A/∂µa_j and ∂A/∂κ_j (NodalSensitivity) equal the independent assembly with a unit
    nodal coefficient at j: A is linear in µa and κ, so that assembly is the derivative."""
    mesh = nirfast_problem[0]
    sensitivity = DiffusionFEM.from_mesh(mesh).sensitivity
    n = mesh.n_nodes
    zero = np.zeros(n)
    boundary_node = int(mesh.boundary_edges[0, 0])
    for j in [boundary_node, *np.random.default_rng(0).choice(n, 4, replace=False)]:
        unit = np.eye(1, n, j)[0]
        neighbourhood = sensitivity.neighbours[j]
        for weights, mua, kappa in ((sensitivity.mass, unit, zero), (sensitivity.stiffness, zero, unit)):
            ours = np.zeros((n, n))
            np.add.at(ours, (neighbourhood[:, None], neighbourhood[None, :]), weights[:, :, j])
            reference = _reference_matrix(mesh.nodes, mesh.elements, mesh.boundary_edges, mua, kappa, zero, 0.0)
            reference = reference.toarray().real
            assert np.count_nonzero(reference) > 0
            np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12 * np.abs(reference).max())
