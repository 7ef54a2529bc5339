"""Adjoint sensitivities: how the system matrix's nodal coefficients act between two fields.

For source fields x_s = A⁻¹q_s and adjoint (detector) fields ψ_d = A⁻¹m_d of the symmetric
system, Φ_sd = m_dᵀ A⁻¹ q_s, so dΦ_sd/dθ = −ψ_dᵀ (∂A/∂θ) x_s. For nodal coefficients of the
P1 diffusion matrix this gives, at node j,

    mass:      M_j(s, d) = Σ_{e∋j} ∫_e φ_j ψ_d x_s           (∂A/∂µa_j)
    stiffness: K_j(s, d) = Σ_{e∋j} (1/3) ∫_e ∇ψ_d·∇x_s      (∂A/∂κ_j; κ̄_e is the node mean)

with the exact P1 integral ∫_e φ_j ψ x = A/60 · (ΣψΣx + Σψx + ψ_jΣx + x_jΣψ + 2ψ_j x_j).
"""

from __future__ import annotations

import jax.numpy as jnp

from ._fem import DiffusionFEM


def field_sensitivities(fem: DiffusionFEM, source_fields, adjoint_fields):
    """Mass and stiffness sensitivities M_j(s, d), K_j(s, d) (see module docstring).

    Arguments:
        fem: the discretisation.
        source_fields: (N, S) fields x_s.
        adjoint_fields: (N, D) fields ψ_d.

    Returns:
        (mass, stiffness), each (N, S, D).
    """
    real = jnp.finfo(source_fields.dtype).dtype
    area = jnp.asarray(fem.areas, real)
    x = source_fields[fem.elements]  # (M, 3, S)
    psi = adjoint_fields[fem.elements]  # (M, 3, D)
    sum_x, sum_psi = x.sum(1), psi.sum(1)
    weight = area / 60.0

    # Terms shared by the three nodes of an element, then the node-local ones.
    shared = weight[:, None, None] * (
        sum_x[:, :, None] * sum_psi[:, None, :] + jnp.einsum("mas,mad->msd", x, psi)
    )
    stiffness_e = jnp.einsum("mab,mad,mbs->msd", jnp.asarray(fem.stiffness, real), psi, x) / 3.0
    mass = fem.sum_to_nodes(shared)
    node_x = fem.sum_to_nodes(weight[:, None] * sum_x)  # Σ_{e∋j} A/60 Σx
    node_psi = fem.sum_to_nodes(weight[:, None] * sum_psi)
    node_w = fem.sum_to_nodes(weight)
    mass = mass + (
        node_x[:, :, None] * adjoint_fields[:, None, :]
        + source_fields[:, :, None] * node_psi[:, None, :]
        + 2.0 * node_w[:, None, None] * source_fields[:, :, None] * adjoint_fields[:, None, :]
    )
    return mass, fem.sum_to_nodes(stiffness_e)
