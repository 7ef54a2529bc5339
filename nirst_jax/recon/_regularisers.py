"""Regularisation matrices R (K×K) for the Gauss-Newton penalty (u − u₀)ᵀ R (u − u₀).

Tikhonov: R = I. The structural priors couple coefficients through a similarity graph W
(symmetric, w_ii = 1) and penalise each coefficient's departure from the W-weighted mean of
the coefficients like it:

    L = I − D⁻¹W,   D = diag(Σ_j w_ij),   R = LᵀL + β·I.

L annihilates anything constant over a group of similar coefficients, so the prior lets the
data set each group's level and suppresses variation within a group; β (small) keeps R
positive definite where a coefficient has no similar partner.

- DRI (direct regularisation from the MRI intensities; L. Zhang et al., Biomed. Opt. Express
  6, 3618 (2015); J. Feng et al., J. Biomed. Opt. 21, 090506 (2016)): w_ij =
  exp(−(g_i − g_j)²/(2σ²)) on the grey levels g sampled at the coefficients, σ a fraction of
  the image's robust grey-level range. No segmentation: coefficients of similar grey level,
  near or far, are coupled strongly, across an edge they are coupled weakly.
- Soft prior (NIRFAST): w_ij = Σ_r m_ir m_jr for region memberships m (rows summing to 1);
  hard labels give NIRFAST's L_ij = −1/n_r within region r. Needs a segmentation.
"""

from __future__ import annotations

import jax.numpy as jnp

from .._full_precision import matmul

DEFAULT_TIKHONOV_FRACTION = 0.01
"""β: the identity share of the structural priors."""
DEFAULT_DRI_WIDTH = 0.1
"""σ as a fraction of the grey-level range (2nd to 98th percentile)."""


def tikhonov_matrix(n_coefficients: int, dtype=float) -> jnp.ndarray:
    """R = I (K×K)."""
    return jnp.eye(n_coefficients, dtype=dtype)


def similarity_matrix(similarity, tikhonov_fraction: float = DEFAULT_TIKHONOV_FRACTION) -> jnp.ndarray:
    """R = LᵀL + β·I with L = I − D⁻¹W (module docstring).

    Arguments:
        similarity: (K, K) symmetric W ≥ 0 with positive row sums.
        tikhonov_fraction: β.

    Returns:
        (K, K) symmetric positive definite R.
    """
    similarity = jnp.asarray(similarity)
    k = similarity.shape[-1]
    coupling = jnp.eye(k, dtype=similarity.dtype) - similarity / similarity.sum(-1, keepdims=True)
    return matmul(coupling.T, coupling) + tikhonov_fraction * jnp.eye(k, dtype=similarity.dtype)


def dri_matrix(
    grey, width: float = DEFAULT_DRI_WIDTH, tikhonov_fraction: float = DEFAULT_TIKHONOV_FRACTION
) -> jnp.ndarray:
    """DRI regularisation matrix from MRI grey levels at the coefficients.

    Arguments:
        grey: (K,) MRI intensity sampled at each coefficient (any units).
        width: σ as a fraction of the grey-level range between the 2nd and 98th percentiles.
        tikhonov_fraction: β.

    Returns:
        (K, K) R.
    """
    grey = jnp.asarray(grey)
    spread = jnp.percentile(grey, 98) - jnp.percentile(grey, 2)
    # A uniform image carries no structure: every pair is alike.
    sigma = width * jnp.where(spread > 0, spread, 1.0)
    difference = (grey[:, None] - grey[None, :]) / sigma
    return similarity_matrix(jnp.exp(-0.5 * difference**2), tikhonov_fraction)


def soft_prior_matrix(membership, tikhonov_fraction: float = DEFAULT_TIKHONOV_FRACTION) -> jnp.ndarray:
    """NIRFAST-style soft-prior matrix from region memberships.

    Arguments:
        membership: (K, R) share of each coefficient in each region (rows sum to 1; one-hot
            for a hard segmentation).
        tikhonov_fraction: β.

    Returns:
        (K, K) R.
    """
    membership = jnp.asarray(membership)
    return similarity_matrix(matmul(membership, membership.T), tikhonov_fraction)
