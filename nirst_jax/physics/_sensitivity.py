"""Adjoint sensitivities: how the system matrix's nodal coefficients act between two fields.

For source fields x_s = A⁻¹q_s and adjoint (detector) fields ψ_d = A⁻¹m_d of the symmetric
system, Φ_sd = m_dᵀ A⁻¹ q_s, so dΦ_sd/dθ = −ψ_dᵀ (∂A/∂θ) x_s. For the P1 diffusion matrix the
derivative with respect to a nodal coefficient at node j only couples nodes of the elements
around j, so it is a small dense matrix on j's neighbourhood:

    mass:      ∂A_kl/∂µa_j = T_j[k, l] = Σ_{e∋j} ∫_e φ_j φ_k φ_l
    stiffness: ∂A_kl/∂κ_j  = W_j[k, l] = Σ_{e∋j} (1/3) ∫_e ∇φ_k·∇φ_l     (κ̄_e is the node mean)

with the exact P1 integral ∫_e φ_a φ_b φ_c = A/60 · (1 + δab + δac + δbc + 2δabc). Each
sensitivity is then two small contractions per node with the fields gathered on its
neighbourhood: no per-element (M, S, D) intermediate and no scatter.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._full_precision import einsum

_EYE = np.eye(3)
_TRIPLE_PRODUCT = (
    1.0 + _EYE[:, :, None] + _EYE[:, None, :] + _EYE[None, :, :] + 2.0 * np.einsum("ab,bc->abc", _EYE, _EYE)
) / 60.0
"""∫_e φ_a φ_b φ_c divided by the element area."""


def _neighbourhoods(elements: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Node neighbourhoods and the slot of each (node, neighbour) pair.

    Returns:
        (neighbours, slot): neighbours (N, P) lists node j first, then the nodes sharing an
        element with it, padded by repeating j; slot(j, k) is a function giving k's column
        in row j for arrays of pairs.
    """
    pairs = np.stack([np.repeat(elements, 3, axis=1).ravel(), np.tile(elements, (1, 3)).ravel()])
    # Sort each node's own index first (key −1), then its neighbours by index.
    key = np.where(pairs[0] == pairs[1], -1, pairs[1])
    unique = np.unique(np.stack([pairs[0], key]), axis=1)
    counts = np.bincount(unique[0], minlength=n_nodes)
    starts = np.cumsum(counts) - counts
    columns = np.arange(unique.shape[1]) - np.repeat(starts, counts)
    neighbours = np.repeat(np.arange(n_nodes, dtype=np.int32)[:, None], counts.max(), axis=1)
    neighbours[unique[0], columns] = np.where(unique[1] < 0, unique[0], unique[1])
    codes = unique[0].astype(np.int64) * (n_nodes + 1) + unique[1] + 1

    def slot(node: np.ndarray, other: np.ndarray) -> np.ndarray:
        other_key = np.where(node == other, -1, other)
        index = np.searchsorted(codes, node.astype(np.int64) * (n_nodes + 1) + other_key + 1)
        return index - starts[node]

    return neighbours, slot


class NodalSensitivity(eqx.Module):
    """Derivatives of the system matrix with respect to nodal µa and κ, per neighbourhood.

    Build once per mesh with `NodalSensitivity.from_elements`; a pytree for jit/vmap.

    Attributes:
        neighbours: (N, P) node j, then the nodes sharing an element with it; padded by
            repeating j (with zero weights).
        mass: (P, P, N) T_j[k, l] (module docstring) on j's neighbourhood; nodes last.
        stiffness: (P, P, N) W_j[k, l] on j's neighbourhood; nodes last.
    """

    neighbours: np.ndarray
    mass: np.ndarray
    stiffness: np.ndarray

    @classmethod
    def from_elements(
        cls, elements: np.ndarray, areas: np.ndarray, element_stiffness: np.ndarray, n_nodes: int
    ) -> "NodalSensitivity":
        """Build from the P1 element data.

        Arguments:
            elements: (M, 3) node indices.
            areas: (M,) element areas.
            element_stiffness: (M, 3, 3) ∫∇φa·∇φb over each element.
            n_nodes: N.

        Returns:
            The `NodalSensitivity`.
        """
        neighbours, slot = _neighbourhoods(elements, n_nodes)
        width = neighbours.shape[1]
        a, b, c = (index.ravel() for index in np.indices((3, 3, 3)))
        j, k, l = elements[:, a], elements[:, b], elements[:, c]  # (M, 27) each
        flat = (j * width + slot(j, k)) * width + slot(j, l)
        mass = np.zeros(n_nodes * width * width)
        np.add.at(mass, flat.ravel(), (areas[:, None] * _TRIPLE_PRODUCT[a, b, c]).ravel())
        stiffness = np.zeros(n_nodes * width * width)
        np.add.at(stiffness, flat.ravel(), (element_stiffness[:, b, c] / 3.0).ravel())
        to_nodes_last = lambda w: np.ascontiguousarray(np.moveaxis(w.reshape(n_nodes, width, width), 0, -1))
        return cls(neighbours=neighbours, mass=to_nodes_last(mass), stiffness=to_nodes_last(stiffness))

    def field_derivative(self, source_fields, adjoint_fields, d_mua, d_kappa):
        """dΦ_sd/dθ_j = −ψ_dᵀ (∂A/∂θ_j) x_s for one nodal parameter θ_j at every node j.

        Arguments:
            source_fields: (N, S) fields x_s.
            adjoint_fields: (N, D) fields ψ_d.
            d_mua, d_kappa: (N,) ∂µa_j/∂θ_j and ∂κ_j/∂θ_j (scalars broadcast).

        Returns:
            (S, D, N) derivatives, nodes last.
        """
        real = jnp.finfo(source_fields.dtype).dtype
        d_mua = jnp.asarray(d_mua, real)
        d_kappa = jnp.asarray(d_kappa, real)
        weights = -(d_mua * jnp.asarray(self.mass, real) + d_kappa * jnp.asarray(self.stiffness, real))
        around = self.neighbours.T  # (P, N)
        x = source_fields.T[:, around]  # (S, P, N)
        psi = adjoint_fields.T[:, around]  # (D, P, N)
        weighted_x = einsum("pqn,sqn->spn", weights.astype(x.dtype), x)
        return einsum("dpn,spn->sdn", psi, weighted_x)
