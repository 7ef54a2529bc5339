"""Linear-triangle (P1) finite elements for the diffusion equation with a Robin boundary.

    −∇·κ∇Φ + (µa + iω/c) Φ = q  in Ω,        Φ + 2Aκ ∂Φ/∂n = 0  on ∂Ω,

with nodal µa, κ = 1/(3(µa + µs')) and c = c₀/n. The weak form gives the symmetric system

    Σ_e [ κ̄_e ∫∇φi·∇φj + ∫(µa + iω/c) φi φj ] + Σ_∂e ∫ φi φj / (2A) ds,

integrated exactly for nodal (piecewise-linear) µa and κ: the stiffness uses the element mean
of κ (∇φ is constant), the mass is the trilinear form ∫φk φi φj, and the boundary term uses the
linear profile of 1/(2A) along each edge.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..mesh import Mesh
from ._sensitivity import NodalSensitivity
from ._sparse_system import SymmetricSparsePattern


def _element_stiffness(mesh: Mesh) -> np.ndarray:
    """(M, 3, 3) ∫∇φi·∇φj over each element."""
    p = mesh.nodes[mesh.elements]
    # ∇φi = (y_j − y_k, x_k − x_j) / (2 area) for the cyclic (i, j, k).
    grads = np.stack(
        [
            np.stack([p[:, 1, 1] - p[:, 2, 1], p[:, 2, 0] - p[:, 1, 0]], axis=-1),
            np.stack([p[:, 2, 1] - p[:, 0, 1], p[:, 0, 0] - p[:, 2, 0]], axis=-1),
            np.stack([p[:, 0, 1] - p[:, 1, 1], p[:, 1, 0] - p[:, 0, 0]], axis=-1),
        ],
        axis=1,
    ) / (2.0 * mesh.areas[:, None, None])
    return mesh.areas[:, None, None] * np.einsum("mia,mja->mij", grads, grads)


def linear_mass(areas: jnp.ndarray, nodal: jnp.ndarray) -> jnp.ndarray:
    """Element matrices ∫ f φi φj for f linear with nodal values `nodal`.

    ∫ φk φi φj = A/60 · (1 + δij + δik + δjk + 2δijk) on a triangle of area A.

    Arguments:
        areas: (M,) element areas.
        nodal: (..., M, 3) values of f at each element's nodes.

    Returns:
        (..., M, 3, 3) element matrices.
    """
    total = nodal.sum(-1)[..., None, None]
    eye = jnp.eye(3, dtype=nodal.dtype)
    matrix = (
        total * (1.0 + eye)
        + nodal[..., :, None]
        + nodal[..., None, :]
        + 2.0 * eye * nodal[..., :, None]
    )
    return (areas[:, None, None] / 60.0) * matrix


def edge_mass(lengths: jnp.ndarray, nodal: jnp.ndarray) -> jnp.ndarray:
    """Edge matrices ∫ g φi φj ds for g linear along each edge with end values `nodal`.

    Arguments:
        lengths: (E,) edge lengths.
        nodal: (..., E, 2) values of g at each edge's two nodes.

    Returns:
        (..., E, 2, 2) edge matrices, L/12 · [[3ga + gb, ga + gb], [ga + gb, ga + 3gb]].
    """
    ga, gb = nodal[..., 0], nodal[..., 1]
    off = ga + gb
    matrix = jnp.stack(
        [jnp.stack([3 * ga + gb, off], -1), jnp.stack([off, ga + 3 * gb], -1)], -2
    )
    return (lengths[:, None, None] / 12.0) * matrix


class DiffusionFEM(eqx.Module):
    """P1 discretisation of the diffusion equation on a fixed mesh.

    Build it once per mesh with `DiffusionFEM.from_mesh`; it is a pytree that can be closed
    over or passed through `jit`/`vmap`.

    Attributes:
        elements: (M, 3) node indices.
        areas: (M,) element areas (mm²).
        stiffness: (M, 3, 3) ∫∇φi·∇φj.
        boundary_edges: (E, 2) node indices.
        edge_lengths: (E,) mm.
        pattern: the sparse pattern (element entries, then edge entries) and its solver plan.
        sensitivity: derivatives of the system matrix w.r.t. nodal µa and κ (adjoint
            Jacobians).
    """

    elements: np.ndarray
    areas: np.ndarray
    stiffness: np.ndarray
    boundary_edges: np.ndarray
    edge_lengths: np.ndarray
    pattern: SymmetricSparsePattern
    sensitivity: NodalSensitivity

    @classmethod
    def from_mesh(cls, mesh: Mesh, *, leaf_size: int = 32) -> "DiffusionFEM":
        """Discretise on `mesh`.

        Arguments:
            mesh: the `Mesh`.
            leaf_size: target unknowns per leaf of the solver's elimination tree.

        Returns:
            The `DiffusionFEM`.
        """
        e, b = mesh.elements, mesh.boundary_edges
        rows = np.concatenate([np.repeat(e, 3, axis=1).ravel(), np.repeat(b, 2, axis=1).ravel()])
        cols = np.concatenate([np.tile(e, (1, 3)).ravel(), np.tile(b, (1, 2)).ravel()])
        lengths = np.linalg.norm(mesh.nodes[b[:, 1]] - mesh.nodes[b[:, 0]], axis=1)
        stiffness = _element_stiffness(mesh)
        areas = np.asarray(mesh.areas, np.float64)
        return cls(
            elements=np.asarray(e, np.int32),
            areas=areas,
            stiffness=stiffness,
            boundary_edges=np.asarray(b, np.int32),
            edge_lengths=lengths,
            pattern=SymmetricSparsePattern.build(mesh.nodes, rows, cols, leaf_size=leaf_size),
            sensitivity=NodalSensitivity.from_elements(e, areas, stiffness, mesh.n_nodes),
        )

    @property
    def n_nodes(self) -> int:
        return self.pattern.n

    def system_values(self, mua, kappa, robin, wave_number=None) -> jnp.ndarray:
        """COO values of the system matrix.

        Arguments:
            mua: (N,) nodal absorption µa (mm⁻¹).
            kappa: (N,) nodal diffusion coefficient κ (mm).
            robin: scalar or (N,) boundary coefficient 1/(2A).
            wave_number: None for CW, else ω/c (mm⁻¹), scalar or (N,): adds i·ω/c to µa.

        Returns:
            (nnz,) real values for CW, complex for frequency domain.
        """
        real = jnp.result_type(mua, kappa, robin)
        areas = jnp.asarray(self.areas, real)
        kappa_mean = kappa[self.elements].mean(-1)
        element = kappa_mean[:, None, None] * jnp.asarray(self.stiffness, real)
        element = element + linear_mass(areas, mua[self.elements])
        if wave_number is not None:
            k = jnp.broadcast_to(jnp.asarray(wave_number, real), mua.shape)
            element = element + 1j * linear_mass(areas, k[self.elements])
        robin = jnp.broadcast_to(jnp.asarray(robin, real), mua.shape)
        edge = edge_mass(jnp.asarray(self.edge_lengths, real), robin[self.boundary_edges])
        return jnp.concatenate([element.reshape(-1), edge.reshape(-1).astype(element.dtype)])

    def solve(self, values: jnp.ndarray, rhs: jnp.ndarray) -> jnp.ndarray:
        """Fields A⁻¹ rhs for the system with COO `values`; rhs is (N, k). Differentiable."""
        return self.pattern.solve(values, rhs)
