"""Measurements and MRI of explicit test phantoms (the fixed ones, shape families), simulated
like a dataset's phantoms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._random import purpose_key, seed_key
from ..mesh import GridInterpolation, Mesh
from ..phantoms import Coverage, add_mri_noise, fixed_phantom
from ..physics import add_amplitude_noise


def simulate_fixed_phantoms(names, config, mesh: Mesh, seed: int = 0) -> dict:
    """Simulate named fixed phantoms (`nirst_jax.phantoms.FIXED_PHANTOMS`) with a dataset's
    settings (`simulate_phantoms`)."""
    return simulate_phantoms([fixed_phantom(name) for name in names], config, mesh, seed)


def simulate_phantoms(phantoms, config, mesh: Mesh, seed: int = 0, purpose: str = "fixed-phantom") -> dict:
    """Simulate explicit phantoms with a dataset's settings.

    Arguments:
        phantoms: `Phantom`s.
        config: the `SimulationConfig` (wavelengths, fibres, amplitude and MRI noise, image size).
        mesh: the simulation mesh.
        seed: seed of the amplitude and MRI noise.
        purpose: names the noise stream (sets simulated with the same seed stay independent).

    Returns:
        Dict: `phantoms` (the list), `ln_amplitude` (P, L, S, K) with noise, `mri` (P, H, H)
        with noise, `targets` (P, 3, H, H), `mask` (H, W).
    """
    phantoms = list(phantoms)
    grid = config.grid()
    mask = np.asarray(GridInterpolation.build(mesh, grid).mask)
    model = config.forward_model(mesh)
    nodes, pixels = Coverage.nodes(mesh), Coverage.pixels(grid)
    root = seed_key(seed, purpose)
    ln_amplitude, mri, targets = [], [], []
    for k, phantom in enumerate(phantoms):
        key = jax.random.fold_in(root, k)
        k_data, k_mri = purpose_key(key, "amplitude-noise"), purpose_key(key, "mri-noise")
        clean = model(jnp.asarray(phantom.nodal(nodes)), *phantom.scatter)  # each phantom's own law
        noise = jax.random.normal(k_data, clean.shape, clean.dtype)
        ln_amplitude.append(np.asarray(add_amplitude_noise(clean, config.noise, noise)))
        grey = jnp.asarray(phantom.mri(pixels, mask), jnp.float32)
        mri.append(np.asarray(add_mri_noise(grey, config.phantoms.mri.noise, k_mri)))
        targets.append(phantom.images(pixels, mask))
    return dict(phantoms=phantoms, ln_amplitude=np.stack(ln_amplitude), mri=np.stack(mri),
                targets=np.stack(targets).astype(np.float32), mask=mask)
