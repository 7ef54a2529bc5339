"""Random phantom parameters: inclusion geometry, tissue values, scattering, MRI shapes.

Everything is drawn with `jax.random` from one key per phantom, so a phantom depends only on
(configuration, key): generation is reproducible on any number of devices.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ._config import PhantomConfig

_LENS_CANDIDATES = 64
"""Candidate midpoints for a pair of inclusions; each lands in the valid lens with probability
≥ ½, so all failing has probability < 1e-19."""


class PhantomParameters(eqx.Module):
    """One random phantom (or a batch, with a leading axis on every field).

    Attributes:
        centers: (K, 2) inclusion centres, mm (absent inclusions: 0).
        radii: (K,) inclusion radii, mm (absent: 0).
        present: (K,) which inclusions exist; the first always does.
        background: (3,) HbO (µM), Hb (µM), water (%).
        lesions: (K, 3) inclusion HbO, Hb, water.
        scatter: (2,) scattering amplitude a (mm⁻¹) and power b.
        mri_centers: (K, 2) inclusion centres on the MRI.
        mri_radii: (K,) inclusion radii on the MRI.
    """

    centers: jnp.ndarray
    radii: jnp.ndarray
    present: jnp.ndarray
    background: jnp.ndarray
    lesions: jnp.ndarray
    scatter: jnp.ndarray
    mri_centers: jnp.ndarray
    mri_radii: jnp.ndarray

    @property
    def n_inclusions(self) -> jnp.ndarray:
        return self.present.sum(-1)


F32 = jnp.float32
# Every draw is float32 whatever `jax_enable_x64` says, so a dataset depends only on its seed.


def _unit(angle):
    return jnp.stack([jnp.cos(angle), jnp.sin(angle)])


def _single_center(key, room):
    """A point uniform in the disk of radius `room`."""
    u = jax.random.uniform(key, (2,), F32)
    return jnp.sqrt(u[0]) * room * _unit(2 * jnp.pi * u[1])


def _pair_centers(key, room, half_distance):
    """Two points 2·`half_distance` apart, both within `room` of the origin, uniformly.

    The pair is a direction u (uniform) and a midpoint m uniform in the lens
    {|m ± half·u| ≤ room}, sampled by rejection from the lens's bounding box.
    """
    k_angle, k_box = jax.random.split(key)
    u = _unit(jax.random.uniform(k_angle, (), F32, maxval=2 * jnp.pi))
    v = jnp.stack([-u[1], u[0]])
    along = room - half_distance
    across = jnp.sqrt(jnp.maximum(room**2 - half_distance**2, 0.0))
    box = jax.random.uniform(k_box, (_LENS_CANDIDATES, 2), F32, minval=-1.0, maxval=1.0)
    a, b = box[:, 0] * along, box[:, 1] * across
    valid = a**2 + b**2 + half_distance**2 + 2 * half_distance * jnp.abs(a) <= room**2
    pick = jnp.argmax(valid)
    midpoint = a[pick] * u + b[pick] * v
    return jnp.stack([midpoint - half_distance * u, midpoint + half_distance * u])


def sample_phantom(config: PhantomConfig, key) -> PhantomParameters:
    """Draw one phantom from `config` (traceable; vmap over keys for a batch).

    Arguments:
        config: the distribution.
        key: a `jax.random` key.

    Returns:
        The `PhantomParameters`.
    """
    keys = jax.random.split(key, 8)
    room = config.radius_mm - config.margin_mm
    count = config.max_inclusions

    diameters = jnp.asarray(config.single_diameters_mm, F32)
    radius = diameters[jax.random.randint(keys[0], (), 0, len(diameters), jnp.int32)] / 2
    single = jnp.zeros((count, 2), F32).at[0].set(_single_center(keys[1], room - radius))
    single_radii = jnp.zeros(count, F32).at[0].set(radius)
    if count == 2:
        two = jax.random.uniform(keys[2], (), F32) < config.two_inclusion_probability
        pair_radius = config.pair_diameter_mm / 2
        gap = jax.random.uniform(keys[3], (), F32, minval=config.pair_gap_mm[0], maxval=config.pair_gap_mm[1])
        pair = _pair_centers(keys[4], room - pair_radius, pair_radius + gap / 2)
        centers = jnp.where(two, pair, single)
        radii = jnp.where(two, jnp.full(2, pair_radius, F32), single_radii)
        present = jnp.stack([jnp.array(True), two])
    else:
        centers, radii, present = single, single_radii, jnp.ones(1, bool)

    k_background, *k_lesions = jax.random.split(keys[5], count + 1)
    background = config.tissue.sample_background(k_background)
    lesions = jnp.stack([config.tissue.sample_lesion(k, background) for k in k_lesions])

    scatter_ranges = jnp.asarray([config.scatter_amplitude, config.scatter_power], F32)
    scatter = scatter_ranges[:, 0] + jax.random.uniform(keys[6], (2,), F32) * (scatter_ranges[:, 1] - scatter_ranges[:, 0])

    mismatch = config.mri.mismatch_mm
    k_radius, k_shift = jax.random.split(keys[7])
    mri_radii = radii + jax.random.uniform(k_radius, (count,), F32, minval=-mismatch, maxval=mismatch)
    shifts = jax.vmap(lambda k: _single_center(k, mismatch))(jax.random.split(k_shift, count))
    mri_centers = centers + shifts
    return PhantomParameters(
        centers=centers,
        radii=radii,
        present=present,
        background=background,
        lesions=lesions,
        scatter=scatter,
        mri_centers=jnp.where(present[:, None], mri_centers, 0.0),
        mri_radii=jnp.where(present, mri_radii, 0.0),
    )
