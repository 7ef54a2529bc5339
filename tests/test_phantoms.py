"""Phantom shapes, coverage, the random phantom distribution (statistics) and fixed phantoms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import nirst_jax as nj
from nirst_jax.mesh import GridInterpolation, PixelGrid
from nirst_jax.phantoms import (
    FIXED_PHANTOMS,
    Circle,
    REALISTIC,
    Coverage,
    Decoupling,
    Ellipse,
    MRIConfig,
    SHAPE_FAMILIES,
    Phantom,
    PhantomConfig,
    Region,
    StarShape,
    TissueTable,
    fixed_phantom,
    inside_glandular,
    node_coverage,
    paint,
    phantom_config,
    pixel_coverage,
    sample_phantom,
    shape_family,
)


@pytest.fixture(scope="module")
def mesh():
    return nj.disk_mesh(41.0, 2.5)


@pytest.fixture(scope="module")
def draws():
    """5000 phantoms of the paper distribution (parameters only)."""
    config = PhantomConfig()
    keys = jax.random.split(jax.random.key(7), 5000)
    params = jax.jit(jax.vmap(lambda k: sample_phantom(config, k)))(keys)
    return config, jax.tree.map(np.asarray, params)


def hat_mass(mesh):
    return np.bincount(mesh.elements.ravel(), np.repeat(mesh.areas / 3, 3), mesh.n_nodes)


def test_node_coverage_integrates_to_the_shape_area(mesh):
    # Σ_j ∫φ_j χ = ∫χ because the hat functions sum to one.
    for shape in (Circle((5.0, -7.0), 9.0), StarShape((-4.0, 6.0), 10.0, ((3, 0.2, 0.1),))):
        area = (node_coverage(mesh, shape) * hat_mass(mesh)).sum()
        theta = np.linspace(0, 2 * np.pi, 200001)[:-1]
        r = shape.radius * (np.ones_like(theta) + sum(a * np.cos(m * theta + p) for m, a, p in getattr(shape, "harmonics", ())))
        exact = 0.5 * (r**2).mean() * 2 * np.pi
        assert area == pytest.approx(exact, rel=3e-3)


def test_pixel_coverage_integrates_to_the_shape_area():
    grid = PixelGrid()
    fraction = pixel_coverage(grid, Circle((3.3, 1.7), 6.0))
    assert fraction.min() >= 0 and fraction.max() == 1
    assert fraction.sum() * grid.pixel_mm**2 == pytest.approx(np.pi * 36, rel=3e-3)
    # A pixel well inside is fully covered, one far outside is empty.
    centers = grid.centers()
    distance = np.hypot(*(centers - [3.3, 1.7]).transpose(2, 0, 1))
    assert np.all(fraction[distance < 6 - grid.pixel_mm] == 1)
    assert np.all(fraction[distance > 6 + grid.pixel_mm] == 0)


def test_coverage_of_a_scanner_image_with_rotated_anisotropic_offset_pixels():
    a = np.radians(20.0)
    affine = np.array([[0.7 * np.cos(a), -0.8 * np.sin(a), -30.0], [0.7 * np.sin(a), 0.8 * np.cos(a), -42.0], [0, 0, 1]])
    coverage = Coverage.image(affine, (90, 110))
    fraction = np.asarray(coverage(Circle((3.3, 1.7), 6.0).contains), np.float64)
    assert fraction.shape == (90, 110) and fraction.max() == 1
    assert fraction.sum() * 0.7 * 0.8 == pytest.approx(np.pi * 36, rel=3e-3)
    # Pixel (row r, column c) is centred at affine @ (c, r, 1): the one holding the centre is covered.
    column, row = np.linalg.solve(affine[:2, :2], np.array([3.3, 1.7]) - affine[:2, 2])
    assert fraction[int(round(row)), int(round(column))] == 1
    # On a grid's own affine it is the grid's pixel coverage.
    grid = PixelGrid(40, -41.0, 41.0)
    grid_affine = [[grid.pixel_mm, 0, grid.axis[0]], [0, grid.pixel_mm, grid.y_axis[0]], [0, 0, 1]]
    np.testing.assert_allclose(Coverage.image(grid_affine, (40, 40)).points, Coverage.pixels(grid).points, atol=1e-12)


def test_star_shape_without_harmonics_is_a_circle(mesh):
    assert np.array_equal(node_coverage(mesh, StarShape((1, 2), 8.0)), node_coverage(mesh, Circle((1, 2), 8.0)))
    with pytest.raises(ValueError, match="sum"):
        StarShape((0, 0), 5.0, ((3, 0.6, 0), (5, 0.5, 0)))
    with pytest.raises(ValueError, match="radius"):
        Circle((0, 0), -1.0)


def test_paint_layers_later_regions_on_top():
    fractions = jnp.array([[1.0, 1.0, 0.5], [0.0, 1.0, 0.5]])
    values = jnp.array([[10.0], [20.0]])
    out = paint(jnp.array([2.0]), fractions, values)
    np.testing.assert_allclose(out[0], [10.0, 20.0, 0.5 * (0.5 * 2 + 0.5 * 10) + 0.5 * 20])


def test_inclusion_counts_sizes_and_gaps(draws):
    config, p = draws
    n = len(p.radii)
    two = p.present[:, 1]
    # Two inclusions with probability 0.5: within 4 binomial standard deviations.
    assert abs(two.mean() - 0.5) < 4 * np.sqrt(0.25 / n)
    assert np.all(p.present[:, 0])
    singles = 2 * p.radii[~two, 0]
    assert set(np.round(singles, 5)) == {12.0, 16.0, 20.0}
    for d in (12.0, 16.0, 20.0):
        assert abs((singles == d).mean() - 1 / 3) < 4 * np.sqrt(2 / 9 / len(singles))
    assert np.all(p.radii[two] == 8.0) and np.all(p.radii[~two, 1] == 0)
    gaps = np.linalg.norm(p.centers[two, 0] - p.centers[two, 1], axis=1) - 16.0
    assert gaps.min() >= 4 - 1e-4 and gaps.max() <= 42 + 1e-4
    # Edge-to-edge distances are uniform on [4, 42].
    assert stats.kstest(gaps, stats.uniform(4, 38).cdf).pvalue > 1e-3


def test_inclusions_lie_inside_the_disk_with_the_margin(draws):
    config, p = draws
    reach = np.linalg.norm(p.centers, axis=-1) + p.radii
    assert reach[p.present].max() <= config.radius_mm - config.margin_mm + 1e-4
    # Positions fill the allowed region (uniform single centres: E|c|² = ρ²/2).
    two = p.present[:, 1]
    for d in (12.0, 20.0):
        picked = (~two) & np.isclose(2 * p.radii[:, 0], d)
        room = config.radius_mm - config.margin_mm - d / 2
        mean_square = (p.centers[picked, 0] ** 2).sum(-1).mean()
        assert mean_square == pytest.approx(room**2 / 2, rel=0.08)


def test_tissue_values_within_the_configured_ranges(draws):
    config, p = draws
    table = config.tissue
    hbt = p.background[:, 0] + p.background[:, 1]
    sto2 = 100 * p.background[:, 0] / hbt
    tolerance = 1e-3
    for values, (low, high) in ((hbt, table.background_hbt), (sto2, table.background_sto2), (p.background[:, 2], table.background_water)):
        assert values.min() >= low - tolerance and values.max() <= high + tolerance
        assert values.min() < low + 0.02 * (high - low) and values.max() > high - 0.02 * (high - low)
    lesions = p.lesions[p.present]
    background = np.broadcast_to(p.background[:, None], p.lesions.shape)[p.present]
    contrast = lesions[:, :2].sum(1) / background[:, :2].sum(1)
    assert contrast.min() >= table.lesion_hbt_contrast[0] - tolerance
    assert contrast.max() <= table.lesion_hbt_contrast[1] + tolerance
    lesion_sto2 = 100 * lesions[:, 0] / lesions[:, :2].sum(1)
    assert lesion_sto2.min() >= table.lesion_sto2[0] - tolerance and lesion_sto2.max() <= table.lesion_sto2[1] + tolerance
    water_ratio = lesions[:, 2] / background[:, 2]
    assert water_ratio.min() >= table.lesion_water_contrast[0] - tolerance
    assert np.all((water_ratio <= table.lesion_water_contrast[1] + tolerance))
    assert lesions[:, 2].max() <= 100 + tolerance
    np.testing.assert_array_equal(p.scatter, 1.0)
    # Without mismatch the MRI shows the optical shapes.
    np.testing.assert_array_equal(p.mri_radii, p.radii)
    np.testing.assert_array_equal(p.mri_centers, p.centers)


def test_tissue_table_comes_from_the_priors_file():
    table = TissueTable.from_priors()
    assert table.background_hbt == (10.0, 35.0)
    assert table.background_water == (15.0, 75.0)
    assert table.lesion_hbt_contrast == (0.8, 3.0)
    assert table == PhantomConfig().tissue


def test_mri_mismatch_moves_and_resizes_within_the_setting():
    config = phantom_config("mismatch")
    keys = jax.random.split(jax.random.key(3), 500)
    p = jax.tree.map(np.asarray, jax.vmap(lambda k: sample_phantom(config, k))(keys))
    m = config.mri.mismatch_mm
    change = np.abs(p.mri_radii - p.radii)[p.present]
    shift = np.linalg.norm(p.mri_centers - p.centers, axis=-1)[p.present]
    assert change.max() <= m + 1e-5 and shift.max() <= m + 1e-5
    assert change.mean() > m / 4 and shift.mean() > m / 4


def test_sampling_is_a_function_of_the_key():
    config = PhantomConfig()
    a = sample_phantom(config, jax.random.key(11))
    b = sample_phantom(config, jax.random.key(11))
    c = sample_phantom(config, jax.random.key(12))
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert not np.array_equal(a.background, c.background)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: PhantomConfig(single_diameters_mm=(80.0,)), "cannot fit"),
        (lambda: PhantomConfig(pair_gap_mm=(4.0, 60.0)), "cannot fit"),
        (lambda: PhantomConfig(margin_mm=-1.0), "margin"),
        (lambda: PhantomConfig(two_inclusion_probability=1.5), "probability"),
        (lambda: PhantomConfig(pair_gap_mm=(10.0, 5.0)), "pair_gap_mm"),
        (lambda: TissueTable(background_hbt=(-5.0, 10.0)), "background_hbt"),
        (lambda: TissueTable(lesion_sto2=(50.0, 120.0)), "lesion_sto2"),
        (lambda: MRIConfig(noise=-0.1), "noise"),
        (lambda: PhantomConfig(mri=MRIConfig(mismatch_mm=6.5)), "mismatch"),
        (lambda: Decoupling(silent=1.2), "silent"),
        (lambda: Decoupling(silent=0.6, hidden=0.6), "silent \\+ hidden"),
        (lambda: Decoupling(benign=-0.1), "benign"),
        (lambda: Decoupling(glandular_water=(30.0, 120.0)), "glandular_water"),
        (lambda: PhantomConfig(decoupling=Decoupling(glandular=0.5, glandular_radius_mm=(10.0, 35.0))), "fibroglandular"),
    ],
)
def test_bad_configs_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="unknown phantom config"):
        phantom_config("nope")
    with pytest.raises(ValueError, match="unknown fixed phantom"):
        fixed_phantom("nope")


def test_config_round_trips_through_a_dict():
    for name in ("mismatch", "realistic"):
        config = phantom_config(name)
        assert PhantomConfig.from_dict(config.to_dict()) == config
    # The study's configs describe themselves as before `decoupling` existed (older stores resume).
    assert "decoupling" not in phantom_config("paper").to_dict() and "decoupling" in phantom_config("realistic").to_dict()
    with pytest.raises(ValueError, match="unknown phantom config keys"):
        PhantomConfig.from_dict({"radius": 3})


@pytest.fixture(scope="module")
def rendering(mesh):
    grid = PixelGrid()
    return Coverage.nodes(mesh), Coverage.pixels(grid), GridInterpolation.build(mesh, grid).mask


def region_mean(phantom, rendering, label):
    _, pixels, mask = rendering
    masks = phantom.region_masks(pixels, threshold=1.0)
    return phantom.images(pixels, mask)[:, masks[label] & mask].mean(1)


def test_malignant_and_benign_lesion_contrasts(rendering):
    for name, contrast in (("malignant", 1.5), ("benign", 1.0)):
        phantom = fixed_phantom(name)
        lesion = region_mean(phantom, rendering, "lesion")
        background = region_mean(phantom, rendering, "background")
        assert lesion[:2].sum() / background[:2].sum() == pytest.approx(contrast, rel=1e-6)


def test_fixed_phantoms_render_consistently(rendering, mesh):
    nodes, pixels, mask = rendering
    for name in FIXED_PHANTOMS:
        phantom = fixed_phantom(name)
        nodal = phantom.nodal(nodes)
        images = phantom.images(pixels, mask)
        mri = phantom.mri(pixels, mask)
        assert nodal.shape == (3, mesh.n_nodes) and images.shape == (3, 100, 100) and mri.shape == (100, 100)
        assert np.all(np.isfinite(nodal)) and nodal.min() >= 0 and np.all(images[:, ~mask] == 0)
        # Each region's value and grey level appear where it alone covers the pixels.
        masks = phantom.region_masks(pixels, threshold=1.0)
        for region in phantom.regions:
            inside = masks[region.label] & mask
            assert inside.sum() > 10, (name, region.label)
            np.testing.assert_allclose(images[:, inside].mean(1), region.chromophores, rtol=1e-5)
            np.testing.assert_allclose(mri[inside], region.grey, rtol=1e-6)
    assert len(fixed_phantom("three-inclusions").regions) == 3


def test_phantom_regions_must_fit_and_have_valid_values():
    with pytest.raises(ValueError, match="outside the disk"):
        Phantom((10.0, 5.0, 30.0), (Region(Circle((35.0, 0.0), 10.0), (1.0, 1.0, 1.0), 80.0),))
    with pytest.raises(ValueError, match="chromophores"):
        Region(Circle((0.0, 0.0), 5.0), (1.0, -1.0, 1.0), 80.0)


def test_realistic_distribution_decouples_mri_and_optics():
    """Each `Decoupling` option at its stated rate, with the values it promises."""
    config = phantom_config("realistic")
    keys = jax.random.split(jax.random.key(3), 4000)
    p = jax.tree.map(np.asarray, jax.jit(jax.vmap(lambda k: sample_phantom(config, k)))(keys))
    options = config.decoupling
    assert options == REALISTIC
    n = len(keys)

    def near(rate, expected):  # 4 binomial standard deviations
        return abs(rate - expected) < 4 * np.sqrt(expected * (1 - expected) / n) + 1e-9

    assert near(p.glandular_present.mean(), options.glandular)
    lesion_free = ~p.present[:, 0]
    assert near(lesion_free.mean(), options.lesion_free)
    # Backgrounds: adipose ranges under a fibroglandular region, the study's span otherwise.
    hbt = p.background[:, 0] + p.background[:, 1]
    g = p.glandular_present
    assert hbt[g].min() >= options.adipose_hbt[0] - 1e-4 and hbt[g].max() <= options.adipose_hbt[1] + 1e-4
    assert p.background[g, 2].max() <= options.adipose_water[1] + 1e-4
    assert hbt[~g].max() > options.adipose_hbt[1]  # the study's range reaches fibroglandular values
    glandular_hbt = p.glandular[g, 0] + p.glandular[g, 1]
    assert glandular_hbt.min() >= options.glandular_hbt[0] - 1e-4 and p.glandular[g, 2].min() >= options.glandular_water[0] - 1e-4
    # The region fits inside the disk with the margin.
    extent = p.glandular_radius[g] * (1 + p.glandular_shape[g, 0].sum(-1))
    assert (np.hypot(*p.glandular_center[g].T) + extent <= config.radius_mm - config.margin_mm + 1e-4).all()
    # Inclusions against their local tissue.
    inside = np.asarray(jax.vmap(inside_glandular)(jax.tree.map(jnp.asarray, p), jnp.asarray(p.centers)))
    local = np.where(inside[..., None], p.glandular[:, None], p.background[:, None])
    present = p.present
    contrast = (p.lesions[..., 0] + p.lesions[..., 1]) / (local[..., 0] + local[..., 1])
    silent = present & np.all(np.isclose(p.lesions, local, rtol=1e-6), -1)
    local_grey = np.where(inside, options.glandular_grey, config.mri.background_grey)
    hidden = present & np.isclose(p.mri_greys, local_grey) & ~silent
    assert near(silent.sum() / present.sum(), options.silent)
    assert near(hidden.sum() / present.sum(), options.hidden)
    shown = present & ~silent
    benign = shown & (contrast <= options.benign_hbt_contrast[1] + 1e-4)
    assert near(benign.sum() / shown.sum(), options.benign)
    assert contrast[shown].min() >= options.benign_hbt_contrast[0] - 1e-4
    assert contrast[shown & ~benign].min() >= options.malignant_hbt_contrast[0] - 1e-4
    assert (p.mri_greys[present & ~hidden] == config.mri.inclusion_grey).all()
    assert (p.mri_greys[~present] == 0).all() and (p.radii[~present] == 0).all()


def test_the_study_distribution_has_no_decoupling(draws):
    config, p = draws
    assert not config.decoupling.active and phantom_config("paper") == config
    assert not p.glandular_present.any() and p.present[:, 0].all()
    assert (p.mri_greys[p.present] == config.mri.inclusion_grey).all()


def test_ellipse_covers_its_area_and_orientation(mesh):
    ellipse = Ellipse((4.0, -3.0), (12.0, 5.0), np.pi / 6)
    area = (node_coverage(mesh, ellipse) * hat_mass(mesh)).sum()
    assert area == pytest.approx(np.pi * 12 * 5, rel=5e-3)
    along = np.array([4.0, -3.0]) + 11.0 * np.array([np.cos(np.pi / 6), np.sin(np.pi / 6)])
    across = np.array([4.0, -3.0]) + 6.0 * np.array([-np.sin(np.pi / 6), np.cos(np.pi / 6)])
    assert bool(ellipse.contains(along)) and not bool(ellipse.contains(across))
    assert ellipse.extent == 12.0
    with pytest.raises(ValueError, match="semi-axis"):
        Ellipse((0, 0), (3.0, 0.0))


def test_shape_families_draw_their_shapes_inside_the_disk_with_the_tissue_ranges():
    config = PhantomConfig()
    tissue = config.tissue
    for family in SHAPE_FAMILIES:
        phantoms = shape_family(family, 12, seed=3)
        again = shape_family(family, 12, seed=3)
        assert phantoms == again and phantoms != shape_family(family, 12, seed=4)
        for phantom in phantoms:
            count = 3 if family == "three-inclusions" else 1
            assert len(phantom.regions) == count
            kind = {"ellipses": Ellipse, "irregular": StarShape, "three-inclusions": Circle}[family]
            assert all(isinstance(r.shape, kind) for r in phantom.regions)
            for region in phantom.regions:  # 2 mm margin (the Phantom itself refuses shapes outside the disk)
                assert np.hypot(*region.shape.center) + region.shape.extent <= config.radius_mm - config.margin_mm + 1e-9
            hbo, hb, water = phantom.background
            assert tissue.background_hbt[0] - 1e-3 <= hbo + hb <= tissue.background_hbt[1] + 1e-3
            assert tissue.background_water[0] - 1e-3 <= water <= tissue.background_water[1] + 1e-3
            for region in phantom.regions:
                contrast = sum(region.chromophores[:2]) / (hbo + hb)
                assert tissue.lesion_hbt_contrast[0] - 1e-3 <= contrast <= tissue.lesion_hbt_contrast[1] + 1e-3
        if family == "ellipses":
            ratios = [min(p.regions[0].shape.semi_axes) / max(p.regions[0].shape.semi_axes) for p in phantoms]
            assert 0.35 - 1e-9 <= min(ratios) and max(ratios) <= 0.7 + 1e-9
        if family == "three-inclusions":
            for phantom in phantoms:
                c = [r.shape for r in phantom.regions]
                gaps = [np.hypot(*np.subtract(a.center, b.center)) - a.radius - b.radius for i, a in enumerate(c) for b in c[i + 1:]]
                assert min(gaps) >= 3.0 - 1e-9
    with pytest.raises(ValueError, match="unknown shape family"):
        shape_family("squares", 2)
    with pytest.raises(ValueError, match="count"):
        shape_family("ellipses", 0)
