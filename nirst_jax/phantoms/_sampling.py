"""Random phantom parameters: inclusion geometry, tissue values, scattering, MRI shapes.

Everything is drawn with `jax.random` from one key per phantom, so a phantom depends only on
(configuration, key): generation is reproducible on any number of devices.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from dataclasses import replace

from .._random import purpose_key
from ._config import PhantomConfig
from ._decoupling import GLANDULAR_AMPLITUDE, GLANDULAR_EXTENT, GLANDULAR_ORDERS, Decoupling
from ._placement import DiskPlacement, RegionPlacement, uniform_in_disk
from ._shapes import inside_star

class PhantomParameters(eqx.Module):
    """One random phantom (or a batch, with a leading axis on every field).

    Attributes:
        centers: (K, 2) inclusion centres, mm (absent inclusions: 0).
        radii: (K,) inclusion radii, mm (absent: 0).
        present: (K,) which inclusions exist; the first always does unless the phantom is
            lesion-free (`Decoupling.lesion_free`).
        background: (3,) HbO (µM), Hb (µM), water (%).
        lesions: (K, 3) inclusion HbO, Hb, water.
        scatter: (2,) scattering amplitude a (mm⁻¹) and power b.
        mri_centers: (K, 2) inclusion centres on the MRI.
        mri_radii: (K,) inclusion radii on the MRI.
        mri_greys: (K,) grey level of each inclusion on the MRI.
        glandular_present: () whether there is a fibroglandular region (`Decoupling`).
        glandular_center: (2,) its centre, mm.
        glandular_radius: () its mean radius, mm.
        glandular_shape: (2, len(GLANDULAR_ORDERS)) amplitudes and phases of its rim.
        glandular: (3,) its HbO, Hb, water.
    """

    centers: jnp.ndarray
    radii: jnp.ndarray
    present: jnp.ndarray
    background: jnp.ndarray
    lesions: jnp.ndarray
    scatter: jnp.ndarray
    mri_centers: jnp.ndarray
    mri_radii: jnp.ndarray
    mri_greys: jnp.ndarray
    glandular_present: jnp.ndarray
    glandular_center: jnp.ndarray
    glandular_radius: jnp.ndarray
    glandular_shape: jnp.ndarray
    glandular: jnp.ndarray

    @property
    def n_inclusions(self) -> jnp.ndarray:
        return self.present.sum(-1)


F32 = jnp.float32
# Every draw is float32 whatever `jax_enable_x64` says, so a dataset depends only on its seed.


def sample_phantom(config: PhantomConfig, key, placement: DiskPlacement | RegionPlacement | None = None) -> PhantomParameters:
    """Draw one phantom from `config` (traceable; vmap over keys for a batch).

    Arguments:
        config: the distribution.
        key: a `jax.random` key.
        placement: where inclusions may go (default the disk of `config.radius_mm`; a
            set-up's domain gives its own: `MeasurementSetup.placement`).

    Returns:
        The `PhantomParameters`.
    """
    keys = jax.random.split(key, 8)
    place = DiskPlacement(config.radius_mm) if placement is None else placement
    margin = config.margin_mm
    count = config.max_inclusions

    diameters = jnp.asarray(config.single_diameters_mm, F32)
    radius = diameters[jax.random.randint(keys[0], (), 0, len(diameters), jnp.int32)] / 2
    single = jnp.zeros((count, 2), F32).at[0].set(place.single(keys[1], margin, radius))
    single_radii = jnp.zeros(count, F32).at[0].set(radius)
    if count == 2:
        two = jax.random.uniform(keys[2], (), F32) < config.two_inclusion_probability
        pair_radius = config.pair_diameter_mm / 2
        gap = jax.random.uniform(keys[3], (), F32, minval=config.pair_gap_mm[0], maxval=config.pair_gap_mm[1])
        pair = place.pair(keys[4], margin, pair_radius, pair_radius + gap / 2)
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
    shifts = jax.vmap(lambda k: uniform_in_disk(k, mismatch))(jax.random.split(k_shift, count))
    mri_centers = centers + shifts
    orders = len(GLANDULAR_ORDERS)
    p = PhantomParameters(
        centers=centers,
        radii=radii,
        present=present,
        background=background,
        lesions=lesions,
        scatter=scatter,
        mri_centers=jnp.where(present[:, None], mri_centers, 0.0),
        mri_radii=jnp.where(present, mri_radii, 0.0),
        mri_greys=jnp.where(present, jnp.float32(config.mri.inclusion_grey), 0.0),
        glandular_present=jnp.array(False),
        glandular_center=jnp.zeros(2, F32),
        glandular_radius=jnp.zeros((), F32),
        glandular_shape=jnp.zeros((2, orders), F32),
        glandular=jnp.zeros(3, F32),
    )
    if config.decoupling.active:  # static: the study's distribution keeps its draws bit for bit
        p = _decouple(config, p, purpose_key(key, "decoupling"), place)
    return p


def inside_glandular(p: PhantomParameters, points):
    """(...,) bool: `points` (..., 2) inside the phantom's fibroglandular region (if any)."""
    amplitudes, phases = p.glandular_shape
    inside = inside_star(points, p.glandular_center, p.glandular_radius, GLANDULAR_ORDERS, amplitudes, phases)
    return inside & p.glandular_present


def _decouple(config: PhantomConfig, p: PhantomParameters, key, place) -> PhantomParameters:
    """Apply the `Decoupling` options to a phantom drawn from the study's distribution."""
    options: Decoupling = config.decoupling
    tissue = config.tissue
    keys = jax.random.split(key, 10)
    count = p.present.shape[0]

    # A fibroglandular region in an adipose background, or the study's homogeneous background.
    glandular_present = jax.random.uniform(keys[0], (), F32) < options.glandular
    radius = jax.random.uniform(keys[1], (), F32, *options.glandular_radius_mm)
    center = place.single(keys[2], config.margin_mm, GLANDULAR_EXTENT * radius)
    shape = jnp.stack([
        jax.random.uniform(keys[3], (len(GLANDULAR_ORDERS),), F32, 0.0, GLANDULAR_AMPLITUDE),
        jax.random.uniform(keys[4], (len(GLANDULAR_ORDERS),), F32, 0.0, 2 * jnp.pi),
    ])
    adipose = replace(tissue, background_hbt=options.adipose_hbt, background_water=options.adipose_water)
    glandular_tissue = replace(tissue, background_hbt=options.glandular_hbt, background_water=options.glandular_water)
    k_adipose, k_glandular = jax.random.split(keys[5])
    background = jnp.where(glandular_present, adipose.sample_background(k_adipose), p.background)
    glandular = glandular_tissue.sample_background(k_glandular)
    p = eqx.tree_at(
        lambda q: (q.background, q.glandular_present, q.glandular_center, q.glandular_radius, q.glandular_shape, q.glandular),
        p,
        (background, glandular_present, center, radius, shape, glandular),
    )

    # Inclusions: none at all, or each benign- or malignant-like against its local tissue.
    in_glandular = inside_glandular(p, p.centers)  # (K,)
    local = jnp.where(in_glandular[:, None], glandular, background)
    local_grey = jnp.where(in_glandular, options.glandular_grey, config.mri.background_grey).astype(F32)
    lesion_keys = jax.random.split(keys[6], count)
    if options.benign is None:
        lesions = jax.vmap(tissue.sample_lesion)(lesion_keys, local)
    else:
        benign_table = replace(tissue, lesion_hbt_contrast=options.benign_hbt_contrast)
        malignant_table = replace(tissue, lesion_hbt_contrast=options.malignant_hbt_contrast)
        benign = jax.random.uniform(keys[7], (count,), F32) < options.benign
        lesions = jnp.where(
            benign[:, None],
            jax.vmap(benign_table.sample_lesion)(lesion_keys, local),
            jax.vmap(malignant_table.sample_lesion)(lesion_keys, local),
        )
    u = jax.random.uniform(keys[8], (count,), F32)
    silent = u < options.silent
    hidden = (u >= options.silent) & (u < options.silent + options.hidden)
    lesions = jnp.where(silent[:, None], local, lesions)
    present = p.present & ~(jax.random.uniform(keys[9], (), F32) < options.lesion_free)
    greys = jnp.where(hidden, local_grey, jnp.float32(config.mri.inclusion_grey))
    return eqx.tree_at(
        lambda q: (q.present, q.lesions, q.mri_greys, q.mri_centers, q.mri_radii, q.centers, q.radii),
        p,
        (
            present,
            lesions,
            jnp.where(present, greys, 0.0),
            jnp.where(present[:, None], p.mri_centers, 0.0),
            jnp.where(present, p.mri_radii, 0.0),
            jnp.where(present[:, None], p.centers, 0.0),
            jnp.where(present, p.radii, 0.0),
        ),
    )
