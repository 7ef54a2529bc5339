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
    rows, cols, vals = [], [], []
    for tri in elements:
        p = nodes[tri]
        jac = np.array([p[1] - p[0], p[2] - p[0]]).T
        area = abs(np.linalg.det(jac)) / 2
        grad_ref = np.array([[-1.0, -1.0], [1.0, 0.0], [0.0, 1.0]])
        grads = grad_ref @ np.linalg.inv(jac)
        local = np.zeros((3, 3), complex)
        for bary, weight in _QUADRATURE:
            phi = np.array(bary)
            k_q = phi @ kappa[tri]
            a_q = phi @ mua[tri] + 1j * wave_number
            local += weight * area * (k_q * grads @ grads.T + a_q * np.outer(phi, phi))
        rows += list(np.repeat(tri, 3))
        cols += list(np.tile(tri, 3))
        vals += list(local.ravel())
    for edge in boundary_edges:
        length = np.linalg.norm(nodes[edge[1]] - nodes[edge[0]])
        local = np.zeros((2, 2))
        for t, weight in _GAUSS_2:
            phi = np.array([1 - t, t])
            local += weight * length * (phi @ robin[edge]) * np.outer(phi, phi)
        rows += list(np.repeat(edge, 2))
        cols += list(np.tile(edge, 2))
        vals += list(local.ravel())
    return sp.csc_matrix((vals, (rows, cols)), shape=(n, n))


def _reference_point_source(nodes, elements, point):
    for tri in elements:
        p = nodes[tri]
        t = np.linalg.solve(np.array([p[1] - p[0], p[2] - p[0]]).T, point - p[0])
        bary = np.array([1 - t.sum(), t[0], t[1]])
        if (bary >= -1e-12).all():
            q = np.zeros(len(nodes))
            q[tri] = bary
            return q
    raise AssertionError(f"{point} is outside the mesh")


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


@pytest.mark.parametrize("frequency_hz", [0.0, 100e6])
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
