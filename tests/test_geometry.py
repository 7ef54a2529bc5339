"""The measurement set-up (`nirst_jax.geometry`): domains, optodes, grids and phantom placement
beyond the study's disk, and datasets and networks on such a domain."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.path import Path

from nirst_jax.datasets import Dataset, SimulationConfig, simulate_dataset
from nirst_jax.geometry import MeasurementSetup, OptodePositions, PolygonDomain, RigidRegistration, RimFibres
from nirst_jax.mesh import ImageSlice, PixelGrid, disk_mesh, mesh_outline, polygon_mesh
from nirst_jax.mesh._contour import project_onto_segments
from nirst_jax.phantoms import PhantomConfig, sample_phantom
from nirst_jax.physics import SpectralForwardModel

SIZE = 32


def trefoil(points: int = 240, center=(12.0, -7.0)) -> np.ndarray:
    """A non-convex three-lobed outline about 90 mm across, off the origin."""
    theta = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
    r = 38.0 * (1 + 0.2 * np.cos(3 * theta))
    return np.column_stack([r * np.cos(theta), r * np.sin(theta)]) + np.asarray(center)


def distance_to_outline(points, outline) -> np.ndarray:
    """Exact distance of `points` (P, 2) to a closed polygon, signed positive inside."""
    ends = np.roll(outline, -1, axis=0)
    distance = np.full(len(points), np.inf)
    for a, b in zip(outline, ends):
        _, nearest = project_onto_segments(points, a, b)
        distance = np.minimum(distance, np.linalg.norm(points - nearest, axis=1))
    return np.where(Path(outline).contains_points(points), distance, -distance)


def test_covering_grid_is_centred_on_an_off_centre_mesh():
    mesh = disk_mesh(20.0, 4.0, center=(30.0, -10.0))
    grid = PixelGrid.covering(mesh, 40)
    x0, x1, y0, y1 = grid.extent
    assert (x0, x1, y0, y1) == pytest.approx((10.0, 50.0, -30.0, 10.0), abs=1e-9)
    centers = grid.centers()
    assert centers[0, 0] == pytest.approx((10.5, -29.5)) and centers[0, 1] == pytest.approx((11.5, -29.5))
    # The study's disk keeps its exact grid.
    assert PixelGrid.covering(disk_mesh(41.0, 4.0), 100) == PixelGrid(100, -41.0, 41.0)
    with pytest.raises(ValueError, match="y_low"):
        PixelGrid(10, 0.0, 1.0, float("nan"))


def test_study_disk_setup_is_the_ring_forward_model_and_keeps_old_manifests():
    mesh = disk_mesh(41.0, 6.0)
    setup = MeasurementSetup.disk()
    background = jnp.broadcast_to(jnp.asarray([16.0, 6.0, 45.0])[:, None], (3, mesh.n_nodes))
    ours = setup.forward_model(mesh)(background)
    ring = SpectralForwardModel.create(mesh)(background)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ring))
    assert setup.grid() == PixelGrid(100, -41.0, 41.0)
    # The disk's configs describe themselves as before the set-up existed.
    data = SimulationConfig().to_dict()
    assert "domain" not in data and "optodes" not in data
    assert SimulationConfig.from_dict(data) == SimulationConfig()


def test_setup_round_trips_through_json_and_rejects_bad_descriptions():
    outline = trefoil()
    optodes = OptodePositions(outline[::40], outline[20::40], [(s, d) for s in range(6) for d in range(6) if d != s])
    setup = MeasurementSetup(PolygonDomain(outline), optodes, scatter=(1.2, 0.9), image_size=48)
    again = MeasurementSetup.from_dict(json.loads(json.dumps(setup.to_dict())))
    assert again == setup and again.fingerprint == setup.fingerprint
    assert not again.is_ring and again.layout().shape == (6, 5)
    with pytest.raises(ValueError, match="domain kind"):
        MeasurementSetup.from_dict({**setup.to_dict(), "domain": {"kind": "sphere"}})
    with pytest.raises(ValueError, match="unknown measurement set-up keys"):
        MeasurementSetup.from_dict({**setup.to_dict(), "spacing": 1.0})
    with pytest.raises(ValueError, match="link pair \\(0, 9\\)"):
        OptodePositions(outline[:2], outline[2:4], [(0, 9)])
    with pytest.raises(ValueError, match="not a simple closed curve"):
        PolygonDomain(((0, 0), (10, 10), (10, 0), (0, 10)))
    with pytest.raises(ValueError, match="vertex 0"):
        MeasurementSetup(PolygonDomain(outline), RimFibres(8, angle_offset_deg=10.0))
    with pytest.raises(ValueError, match="active_fibres"):
        setup.measurement_mask(4)


def test_setup_registers_the_mri_onto_the_mesh_and_records_the_registration():
    """An MRI on a rotated, anisotropic, offset affine, moved by the set-up's registration,
    resampled onto the image grid: each pixel inside the mesh holds the analytic image at the
    point the registration moved there (a linear image, which bilinear sampling keeps exactly)."""
    def analytic(points):  # the MRI's intensity at scanner points (mm)
        return 3.0 + 0.2 * points[:, 0] - 0.05 * points[:, 1]

    angle = np.radians(20.0)
    per_column, per_row = 0.8 * np.array([np.cos(angle), np.sin(angle)]), 1.3 * np.array([-np.sin(angle), np.cos(angle)])
    origin = np.array([3.0, -2.0]) - 74.5 * per_column - 54.5 * per_row  # the image's centre 3.6 mm off the origin
    affine = np.array([[*per_column, 0], [*per_row, 0], [*origin, 1]]).T
    rows, columns = np.mgrid[0:110, 0:150]
    centres = np.stack([columns.ravel(), rows.ravel()], 1) @ affine[:2, :2].T + origin
    image = ImageSlice(analytic(centres).reshape(rows.shape), affine)
    registration = RigidRegistration(shift_mm=(2.5, -1.5), rotation_deg=-12.0, center_mm=(4.0, 3.0))
    setup = MeasurementSetup.disk(image_size=32, mri_registration=registration)
    mesh = disk_mesh(41.0, 6.0)
    on_grid = setup.mri_on_grid(image, mesh)
    inside = np.asarray(setup.interpolation(mesh).mask)
    # The point of the scanner image that lands on pixel centre p: p moved back by the registration.
    b = np.radians(-12.0)
    back = (setup.grid().centers()[inside] - [2.5, -1.5] - [4.0, 3.0]) @ np.array(
        [[np.cos(b), -np.sin(b)], [np.sin(b), np.cos(b)]]) + [4.0, 3.0]
    np.testing.assert_allclose(on_grid[inside], analytic(back), atol=1e-9)
    assert (on_grid[~inside] == 0).all()
    # Recorded and rebuilt; no registration leaves the set-up's description (and fingerprint) as before.
    again = MeasurementSetup.from_dict(json.loads(json.dumps(setup.to_dict())))
    assert again == setup and again.mri_registration == registration
    assert "mri_registration" not in MeasurementSetup.disk(image_size=32).to_dict()
    full_turn = MeasurementSetup.disk(mri_registration=RigidRegistration(rotation_deg=360.0, center_mm=(5.0, 0.0)))
    assert full_turn == MeasurementSetup.disk() == MeasurementSetup.from_dict(full_turn.to_dict())
    with pytest.raises(ValueError, match="shift_mm"):
        RigidRegistration(shift_mm=(1.0, np.nan))
    with pytest.raises(ValueError, match="unknown registration keys"):
        RigidRegistration.from_dict({"shift": [1, 2]})
    with pytest.raises(TypeError, match="RigidRegistration"):
        MeasurementSetup.disk(mri_registration=(1.0, 2.0))
    with pytest.raises(ValueError, match="does not cover"):  # moved off the mesh
        MeasurementSetup.disk(image_size=32, mri_registration=RigidRegistration((80.0, 0.0))).mri_on_grid(image, mesh)


def test_outline_of_a_mesh_is_its_boundary_loop():
    outline = trefoil(120)
    mesh = polygon_mesh(outline, 8.0)
    loop = mesh_outline(mesh)
    assert len(loop) == len(mesh.boundary_nodes)
    assert np.abs(distance_to_outline(loop, outline)).max() < 1e-9  # boundary nodes lie on the outline
    domain = PolygonDomain.from_mesh(mesh)
    assert abs(Path(domain.points).contains_points(mesh.nodes[~mesh.is_boundary_node]).mean() - 1) < 1e-12


def test_inclusions_keep_their_clearance_inside_a_non_convex_domain():
    outline = trefoil()
    domain = PolygonDomain(outline)
    config = PhantomConfig(pair_gap_mm=(4.0, 20.0))
    keys = jax.random.split(jax.random.PRNGKey(0), 3000)
    p = jax.jit(jax.vmap(lambda k: sample_phantom(config, k, domain.placement())))(keys)
    centers, radii, present = (np.asarray(a) for a in (p.centers, p.radii, p.present))
    placed = centers[present]
    clearance = distance_to_outline(placed, outline)
    # Bilinear interpolation of the distance on a 0.5 mm map errs by at most half a diagonal.
    assert (clearance >= config.margin_mm + radii[present] - 0.36).all(), (clearance - radii[present]).min()
    pairs = present.all(1)
    separation = np.linalg.norm(centers[pairs, 0] - centers[pairs, 1], axis=1)
    assert (separation >= 2 * radii[pairs, 0] + config.pair_gap_mm[0] - 1e-3).all()
    assert (separation <= 2 * radii[pairs, 0] + config.pair_gap_mm[1] + 1e-3).all()
    # Every lobe receives inclusions (uniform placement, not a disk around the middle).
    angle = np.arctan2(placed[:, 1] + 7.0, placed[:, 0] - 12.0)
    lobes = np.round(angle / (2 * np.pi / 3)) % 3
    assert min(np.mean(lobes == k) for k in range(3)) > 0.2
    reach = np.linalg.norm(placed - [12.0, -7.0], axis=1)
    assert reach.max() > 30.0  # deep into the lobes, beyond the inscribed circle (r ≈ 30 mm)


def test_a_domain_too_small_for_the_inclusions_is_refused():
    small = PolygonDomain(tuple(map(tuple, trefoil(center=(0.0, 0.0)) * 0.4)))
    with pytest.raises(ValueError, match="too little room for a 20 mm inclusion \\(12 mm from the boundary\\)"):
        SimulationConfig(mesh_spacing_mm=3.0, domain=small)
    # The study's pairs, up to 58 mm apart centre to centre, do not fit the 90 mm trefoil.
    with pytest.raises(ValueError, match="too little room for two 16 mm inclusions \\(10 mm from the boundary, 58 mm apart\\)"):
        SimulationConfig(mesh_spacing_mm=3.0, domain=PolygonDomain(trefoil()))
    with pytest.raises(ValueError, match="mesh_spacing_mm"):
        SimulationConfig(mesh_spacing_mm=10.0, domain=small, phantoms=PhantomConfig(two_inclusion_probability=0.0,
                                                                                    single_diameters_mm=(6.0,)))


@pytest.fixture(scope="module")
def trefoil_dataset(tmp_path_factory):
    """160 phantoms in the off-centre trefoil (pairs at most 20 mm apart edge to edge) with 12 rim
    fibres, 6 mm mesh, 32×32 images."""
    config = SimulationConfig(mesh_spacing_mm=6.0, image_size=SIZE, n_fibres=12, domain=PolygonDomain(trefoil()),
                              phantoms=PhantomConfig(pair_gap_mm=(4.0, 20.0)))
    folder = simulate_dataset(tmp_path_factory.mktemp("trefoil") / "data", config, 160, seed=4, config_name="trefoil",
                              progress=False)
    return Dataset(folder)


def test_dataset_on_a_non_disk_domain_follows_its_setup(trefoil_dataset):
    dataset = trefoil_dataset
    config = dataset.config
    assert config == SimulationConfig.from_dict(json.loads((dataset.folder / "manifest.json").read_text())["config"])
    grid = config.grid()
    assert grid.extent == pytest.approx(PixelGrid.around(trefoil(), SIZE).extent)
    # The mask is the domain: pixel centres inside the outline (up to the mesh's chords).
    inside = Path(trefoil()).contains_points(grid.centers().reshape(-1, 2)).reshape(SIZE, SIZE)
    near = np.abs(distance_to_outline(grid.centers().reshape(-1, 2), trefoil())).reshape(SIZE, SIZE) < 1.0
    assert (dataset.image_mask == inside)[~near].all()
    ids = np.arange(16)
    targets = dataset.read("targets", ids)
    assert (targets[:, :, ~dataset.image_mask] == 0).all()
    assert dataset.read("ln_amplitude", ids).shape == (16, 9, 12, 11)
    # The stored measurements are the set-up's forward model of the stored truth.
    model = config.forward_model(dataset.mesh)
    truth = dataset.read("chromophores_nodes", ids[:2])
    clean = np.stack([np.asarray(model(jnp.asarray(c), 1.0, 1.0)) for c in truth])
    np.testing.assert_allclose(clean, dataset.read("ln_amplitude_clean", ids[:2]), atol=2e-4)


def test_symmetry_augmentation_is_refused_where_the_fibres_break_every_symmetry(trefoil_dataset, tmp_path):
    from nirst_jax.models import STUDY_ARCHITECTURE, ModelSpec
    from nirst_jax.training import TrainConfig, Trainer

    spec = ModelSpec("znet", image_size=SIZE, width=0.25, **STUDY_ARCHITECTURE)
    config = TrainConfig(model=spec, epochs=1, batch_size=32, symmetry_augmentation=True, active_fibres=5)
    with pytest.raises(ValueError, match="symmetry_augmentation: the set-up has no symmetry besides the identity"):
        Trainer(trefoil_dataset, tmp_path / "asymmetric", config, progress=False)  # fibres 0, 2, 4, 7, 9 of 12


@pytest.mark.slow  # ≈ 45–110 s on 2 cores, most of it compilation: CI's slow tier
def test_networks_and_dri_reconstruct_on_a_non_disk_domain(trefoil_dataset, tmp_path):
    from nirst_jax.evaluation import GaussNewtonMethod
    from nirst_jax.models import STUDY_ARCHITECTURE, ModelSpec
    from nirst_jax.training import TrainConfig, TrainedNetwork, Trainer, masked_mse, train

    dataset = trefoil_dataset
    spec = ModelSpec("znet", image_size=SIZE, width=0.25, **STUDY_ARCHITECTURE)
    # The trefoil keeps one symmetry, the reflection in its axis: training augments with it.
    config = TrainConfig(model=spec, epochs=10, batch_size=32, physics_weight=0.1, physics_mesh_spacing_mm=8.0,
                         symmetry_augmentation=True)
    with pytest.raises(ValueError, match="no symmetry besides the identity"):  # fibres 0, 2, 4, 7, 9 of 12 break it
        Trainer(dataset, tmp_path / "asymmetric", config.replace(active_fibres=5), progress=False)
    train(dataset, tmp_path / "run", config, progress=False)
    test = dataset.indices("test")
    network = TrainedNetwork(tmp_path / "run")
    images = network(dataset.read("ln_amplitude", test), dataset.read("mri", test))
    targets = dataset.read("targets", test)
    mask = dataset.image_mask
    normalised = dataset.normalisation.targets
    learned = float(masked_mse(normalised(images), normalised(targets), mask))
    mean = float(masked_mse(jnp.zeros_like(targets), normalised(targets), mask))
    assert learned < 0.8 * mean, (learned, mean)
    assert (images[:, :, ~mask] == 0).all()
    # DRI on the same set-up recovers the first test phantom's inclusion better than its background.
    dri = GaussNewtonMethod.for_dataset(dataset, progress=False)
    assert dri.settings["setup"]["domain"]["kind"] == "polygon"
    recovered = dri(dataset.read("ln_amplitude", test[:2]).astype(float), dataset.read("mri", test[:2]))
    assert np.isfinite(recovered).all() and (recovered[:, :, ~mask] == 0).all()
    error = np.abs(recovered - targets[:2])[:, :, mask].mean()
    assert error < np.abs(targets[:2] - targets[:2][:, :, mask].mean(-1)[..., None, None])[:, :, mask].mean()


def _simulated_store(tmp_path, *options):
    """`nirst simulate` of two phantoms on 16 × 16 images and an 8 mm mesh: (manifest, config)."""
    from nirst_jax.cli import main

    out = tmp_path / "data"
    assert main(["simulate", "--count", "2", "--image-size", "16", "--mesh-spacing", "8", "--no-progress",
                 "--out", str(out), *options]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest, SimulationConfig.from_dict(manifest["config"])


def test_simulate_cli_on_a_nirfast_mesh_records_its_outline_and_optodes(nirfast_dir, tmp_path):
    """`nirst simulate --mesh circle2000_86_stnd`: the domain is the file's outline and the optodes
    its 16 fibres from −11.25°, clockwise (not rim fibres from 0°), in the manifest and the data."""
    from nirst_jax.mesh import read_nirfast

    nirfast = read_nirfast(nirfast_dir / "circle2000_86_stnd")
    manifest, config = _simulated_store(tmp_path, "--mesh", str(nirfast_dir / "circle2000_86_stnd"))
    assert config.domain == PolygonDomain.from_mesh(nirfast.mesh)
    assert config.optodes == OptodePositions.from_nirfast(nirfast)
    np.testing.assert_allclose(config.optodes.source_xy[0], nirfast.sources[0])
    assert np.degrees(np.arctan2(*config.optodes.detector_xy[0, ::-1])) == pytest.approx(-11.25, abs=0.5)
    data = np.load(tmp_path / "data" / "shards" / "shard-00000" / "ln_amplitude.npy")
    assert manifest["fields"]["ln_amplitude"]["shape"] == [9, *config.optodes.layout().shape] == [9, 16, 15]
    assert data.shape == (2, 9, 16, 15) and np.isfinite(data).all()


def test_simulate_cli_on_a_contour_with_an_optode_file(tmp_path):
    """`nirst simulate --contour --optodes`: a non-convex outline with 3 sources and 5 detectors
    gives (3, 5) measurements per wavelength, and the manifest records both files' contents."""
    outline = trefoil(36)
    np.savetxt(tmp_path / "outline.csv", outline, delimiter=",", header="x_mm, y_mm")
    sources, detectors = outline[[0, 12, 24]], outline[[6, 15, 18, 27, 33]]
    rows = [f"source,{x},{y}" for x, y in sources] + [f"detector,{x},{y}" for x, y in detectors]
    (tmp_path / "optodes.csv").write_text("\n".join(["kind,x_mm,y_mm", *rows]) + "\n")
    manifest, config = _simulated_store(tmp_path, "--config", "single", "--contour", str(tmp_path / "outline.csv"),
                                        "--optodes", str(tmp_path / "optodes.csv"))
    assert config.domain == PolygonDomain(tuple(map(tuple, outline)))
    np.testing.assert_allclose(config.optodes.source_xy, sources)
    np.testing.assert_allclose(config.optodes.detector_xy, detectors)
    assert config.optodes.layout().shape == (3, 5)
    data = np.load(tmp_path / "data" / "shards" / "shard-00000" / "ln_amplitude.npy")
    assert manifest["fields"]["ln_amplitude"]["shape"] == [9, 3, 5] and data.shape == (2, 9, 3, 5)
    assert np.isfinite(data).all()
