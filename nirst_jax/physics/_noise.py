"""Measurement noise on amplitudes."""

from __future__ import annotations

import jax.numpy as jnp


def add_amplitude_noise(ln_amplitude, level: float, standard_normal):
    """Gaussian noise on the amplitude A, returned as ln A: ln(A·|1 + level·n|).

    Arguments:
        ln_amplitude: noise-free ln A, any shape.
        level: relative standard deviation of the amplitude noise (0.02 = 2 %).
        standard_normal: standard normal samples n of the same shape.

    Returns:
        Noisy ln A (the absolute value keeps the amplitude positive; at 2 % the chance of
        1 + level·n ≤ 0 is below 1e-300).
    """
    return ln_amplitude + jnp.log(jnp.abs(1 + level * standard_normal))
