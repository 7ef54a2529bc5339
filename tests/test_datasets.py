"""Dataset generation: noise levels, MRI grey levels, consistency, store integrity, resume,
device-count independence, the loader and the CLI."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import pytest

import nirst_jax as nj
from _killed_cli import run_killed
from nirst_jax.cli import _simulate, build_parser, main
from nirst_jax.datasets import BatchLoader, Dataset, PhantomSimulator, SimulationConfig, simulate_dataset
from nirst_jax.datasets import _store
from nirst_jax._random import purpose_key
from nirst_jax.evaluation import GaussNewtonMethod
from nirst_jax.experiments import simulate_fixed_phantoms
from nirst_jax.learned import PhysicsLoss
from nirst_jax.phantoms import Circle, Coverage, PhantomConfig, fixed_phantom, pixel_coverage

# A small store: coarse mesh, 24 phantoms in shards of 8, 4 phantoms per device step.
CONFIG = SimulationConfig(mesh_spacing_mm=5.0)
ARGS = dict(count=24, seed=5, shard_size=8, device_batch=4, config_name="paper", progress=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("store") / "data", CONFIG, **ARGS)


@pytest.fixture(scope="module")
def dataset(store):
    return Dataset(store)


def store_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_amplitude_noise_level_matches_the_setting(dataset):
    everything = np.arange(dataset.count)
    noise = dataset.read("ln_amplitude", everything) - dataset.read("ln_amplitude_clean", everything)
    # ln|1 + 0.02 n| has standard deviation 0.02 to within 0.03 %.
    assert noise.std() == pytest.approx(CONFIG.noise, rel=0.02)
    assert abs(noise.mean()) < 3 * CONFIG.noise / np.sqrt(noise.size) + 2e-4


def test_mri_grey_levels_and_noise(dataset):
    mri_config = CONFIG.phantoms.mri
    grid = CONFIG.grid()
    inside_values, background_values = [], []
    for i in range(dataset.count):
        sample = dataset.sample(i)
        covered = np.zeros((100, 100))
        for center, radius, present in zip(sample["centers"], sample["radii"], sample["present"]):
            if present:
                covered += pixel_coverage(grid, Circle(tuple(center), float(radius)))
        inside_values.append(sample["mri"][covered == 1])
        background_values.append(sample["mri"][(covered == 0) & dataset.image_mask])
        assert np.all(sample["mri"][~dataset.image_mask] == 0)
    inside, background = np.concatenate(inside_values), np.concatenate(background_values)
    assert inside.mean() == pytest.approx(mri_config.inclusion_grey, rel=0.005)
    assert background.mean() == pytest.approx(mri_config.background_grey, rel=0.005)
    assert inside.std() / mri_config.inclusion_grey == pytest.approx(mri_config.noise, rel=0.05)
    assert background.std() / mri_config.background_grey == pytest.approx(mri_config.noise, rel=0.05)


def test_stored_targets_and_data_belong_to_the_stored_phantom(dataset):
    mesh = dataset.mesh
    model = nj.SpectralForwardModel.create(mesh)
    for i in (0, 1):
        sample = dataset.sample(i)
        # Targets hold the background and lesion values where pixels are fully inside/outside.
        interior = pixel_coverage(CONFIG.grid(), Circle(tuple(sample["centers"][0]), float(sample["radii"][0]))) == 1
        np.testing.assert_allclose(sample["targets"][:, interior].mean(1), sample["lesions"][0], rtol=1e-5)
        # Stored consistently (a provenance check, not a physics one: the forward model itself is
        # checked against the closed-form disk solution in tests/test_forward.py): the clean data
        # and the background reference are the forward model of the stored nodal chromophores and
        # of the stored background, with the phantom's stored scattering law.
        a, b = sample["scatter"]
        clean = model(jnp.asarray(sample["chromophores_nodes"], jnp.float64), float(a), float(b))
        np.testing.assert_allclose(sample["ln_amplitude_clean"], clean, atol=2e-4)
        homogeneous = np.repeat(sample["background"][:, None].astype(np.float64), mesh.n_nodes, 1)
        np.testing.assert_allclose(sample["ln_amplitude_background"], model(homogeneous, float(a), float(b)), atol=2e-4)


def test_fixed_phantoms_do_not_share_noise_with_training_phantoms(dataset, tmp_path):
    """Fixed test phantom 0 and training phantom 0 of the same seed draw independent MRI noise."""
    quiet = replace(CONFIG, phantoms=replace(CONFIG.phantoms, mri=replace(CONFIG.phantoms.mri, noise=0.0)))
    clean = Dataset(simulate_dataset(tmp_path / "clean", quiet, **{**ARGS, "count": 1})).sample(0)["mri"]
    fixed = simulate_fixed_phantoms(["three-inclusions"], CONFIG, dataset.mesh, seed=ARGS["seed"])
    fixed_clean = fixed_phantom("three-inclusions").mri(Coverage.pixels(CONFIG.grid()), fixed["mask"])
    both = (clean > 0) & (np.asarray(fixed_clean) > 0)
    training_noise = dataset.sample(0)["mri"][both] / clean[both] - 1
    fixed_noise = fixed["mri"][0][both] / np.asarray(fixed_clean)[both] - 1
    assert training_noise.std() == pytest.approx(CONFIG.phantoms.mri.noise, rel=0.05)
    assert fixed_noise.std() == pytest.approx(CONFIG.phantoms.mri.noise, rel=0.05)
    # Independent draws: correlation 0 ± 1/√N (N ≈ 7800 pixels); shared keys gave exactly 1.
    assert abs(np.corrcoef(training_noise, fixed_noise)[0, 1]) < 0.05


def test_purpose_keys_are_distinct_from_each_other_and_from_split_children():
    key = jax.random.key(3)
    streams = [purpose_key(key, p) for p in ("phantom", "mri-noise", "amplitude-noise", "shuffle")]
    streams += list(jax.random.split(key, 3))
    data = {tuple(np.asarray(jax.random.key_data(k)).tolist()) for k in streams}
    assert len(data) == len(streams)
    same = jax.random.key_data(purpose_key(jax.random.key(3), "mri-noise"))
    np.testing.assert_array_equal(same, jax.random.key_data(streams[1]))
    with pytest.raises(ValueError, match="purpose"):
        purpose_key(key, "")


def test_the_set_up_owns_its_scattering_law_everywhere():
    """Simulation, forward model defaults, physics loss and DRI use the dataset's law, or refuse."""
    law = (1.5, 1.2)
    phantoms = PhantomConfig(scatter_amplitude=(law[0], law[0]), scatter_power=(law[1], law[1]))
    config = SimulationConfig(phantoms=phantoms, mesh_spacing_mm=6.0)
    simulator = PhantomSimulator.create(config)
    sample = jax.jit(lambda key: simulator(key))(jax.random.key(0))
    mesh = config.mesh()
    right = nj.SpectralForwardModel.create(mesh, scatter_amplitude=law[0], scatter_power=law[1])
    nodes = jnp.asarray(sample["chromophores_nodes"], jnp.float64)
    # The model's own law is its default: no call can silently fall back to a = b = 1.
    np.testing.assert_allclose(right(nodes), right(nodes, *law), rtol=0, atol=0)
    # Sources sit at the dataset's transport length: data = the set-up's model, not one placed with a = 1.
    np.testing.assert_allclose(sample["ln_amplitude_clean"], right(nodes), rtol=2e-4)  # float32 simulation
    placed_with_one = nj.SpectralForwardModel.create(mesh)(nodes, *law)
    assert np.abs(np.asarray(placed_with_one) - np.asarray(right(nodes))).max() > 1e-2
    assert (simulator.model.scatter_amplitude, simulator.model.scatter_power) == law
    with pytest.raises(ValueError, match="differs from the forward model's set-up"):
        nj.recon.Reconstructor.create(right, mesh, scatter=(1.0, 1.0))
    # A law drawn per phantom cannot be silently replaced by its mean.
    varying = replace(config, phantoms=replace(phantoms, scatter_amplitude=(1.0, 2.0)))
    store = type("Store", (), {"config": varying, "mesh": mesh})()
    with pytest.raises(ValueError, match="DRI reconstruction needs a known scattering law"):
        GaussNewtonMethod.for_dataset(store)
    with pytest.raises(ValueError, match="the physics loss needs a known scattering law"):
        PhysicsLoss.for_dataset(store)


def test_split_is_deterministic_disjoint_and_70_20_10(dataset):
    parts = [dataset.indices(name) for name in ("train", "validation", "test")]
    assert [len(p) for p in parts] == [17, 5, 2]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(dataset.count))
    np.testing.assert_array_equal(dataset.split_labels, nj.datasets.split_labels(24, ARGS["seed"]))
    big = nj.datasets.split_labels(20000, 0)
    assert np.bincount(big).tolist() == [14000, 4000, 2000]


def test_manifest_records_what_made_the_store(dataset):
    manifest = dataset.manifest
    assert manifest["seed"] == ARGS["seed"] and manifest["count"] == 24 and manifest["status"] == "complete"
    assert manifest["nirst_jax_version"] == nj.__version__
    assert manifest["mesh"]["sha256"] == dataset.mesh.content_hash  # the one mesh hash of the package
    assert SimulationConfig.from_dict(manifest["config"]) == CONFIG
    assert len(manifest["checksums"]) == 3 * len(manifest["fields"]) + 5
    signals = dataset.signals(dataset.indices("train"))
    assert abs(signals.mean()) < 1e-4 and signals.std() == pytest.approx(1, abs=1e-3)


def nirst_killed_at(fragment: str, occurrence: int, *args: str) -> subprocess.CompletedProcess:
    """`nirst ARGS` killed at a rename (tests/_killed_cli.py), with float64 enabled like this test
    process (the store records it)."""
    return run_killed(fragment, occurrence, *args, env=dict(os.environ, JAX_ENABLE_X64="1"))


@pytest.mark.slow
def test_simulate_killed_mid_write_resumes_to_the_uninterrupted_store(store, tmp_path):
    """A real `nirst simulate` SIGKILLed with its second shard written but not in place (and
    again while finishing the manifest) resumes to the bytes of an uninterrupted run."""
    folder = tmp_path / "data"
    command = ["simulate", "--config", "paper", "--count", "24", "--seed", "5", "--mesh-spacing", "5",
               "--shard-size", "8", "--device-batch", "4", "--no-progress", "--out", str(folder)]
    killed = nirst_killed_at("shard-00001", 1, *command)
    assert killed.returncode == -9, killed.stderr
    partial = list((folder / "shards").glob(".shard-00001.*.partial"))
    assert len(partial) == 1 and (partial[0] / "checksums.json").is_file()  # complete, not in place
    assert sorted(p.name for p in (folder / "shards").iterdir() if not p.name.startswith(".")) == ["shard-00000"]
    with pytest.raises(ValueError, match="incomplete"):
        Dataset(folder)
    with pytest.raises(ValueError, match="not empty"):
        simulate_dataset(folder, CONFIG, **ARGS)  # without resume
    # Killed again at the last write (the manifest marked complete), then resumed to the end.
    killed = nirst_killed_at("manifest.json", 1, *command, "--resume")
    assert killed.returncode == -9, killed.stderr
    resumed = nirst_killed_at("never-renamed", 1, *command, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert store_files(folder) == store_files(store)


def test_mismatched_or_corrupt_stores_are_refused(store, tmp_path):
    with pytest.raises(ValueError, match="'seed'"):
        simulate_dataset(store, CONFIG, **{**ARGS, "seed": 6}, resume=True)
    with pytest.raises(ValueError, match="'config.noise' is 0.02, this run's is 0.01"):
        simulate_dataset(store, SimulationConfig(mesh_spacing_mm=5.0, noise=0.01), **ARGS, resume=True)
    # Settings that change the bytes of the shards: mixing runs made under them is refused.
    with pytest.raises(ValueError, match="'device_batch' is 4, this run's is 2"):
        simulate_dataset(store, CONFIG, **{**ARGS, "device_batch": 2}, resume=True)
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["jax_version"] == jax.__version__ and manifest["jaxlib_version"] == jaxlib.__version__
    older = tmp_path / "older"
    shutil.copytree(store, older)
    (older / "manifest.json").write_text(json.dumps({**manifest, "jax_version": "0.4.30"}))
    with pytest.raises(ValueError, match="'jax_version' is \"0.4.30\""):
        simulate_dataset(older, CONFIG, **ARGS, resume=True)
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    target = copy / "shards" / "shard-00001" / "mri.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum of shards/shard-00001/mri.npy"):
        Dataset(copy)
    with pytest.raises(ValueError, match="shard-00001/mri.npy is missing or corrupt"):
        _store.verify_shard(copy, 1, Dataset(store).manifest["fields"])
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json is corrupt"):
        Dataset(copy)
    with pytest.raises(ValueError, match="not a nirst-jax dataset"):
        Dataset(tmp_path)


def test_bad_simulation_settings_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="wavelength"):
        SimulationConfig(wavelengths_nm=(500.0, 800.0))
    with pytest.raises(ValueError, match="noise"):
        SimulationConfig(noise=-0.01)
    with pytest.raises(ValueError, match="precision"):
        SimulationConfig(precision="float16")
    out = tmp_path / "never"
    assert main(["simulate", "--out", str(out), "--count", "4", "--mri-mismatch", "9"]) == 2
    assert main(["simulate", "--out", str(out), "--count", "0"]) == 2
    assert main(["simulate", "--out", str(out), "--count", "4", "--image-size", "4"]) == 2
    assert not out.exists()
    parsed = build_parser().parse_args(["simulate", "--out", str(out), "--image-size", "32", "--mesh-spacing", "4"])
    assert _simulate.build_config(parsed) == SimulationConfig(mesh_spacing_mm=4.0, image_size=32)


def test_loader_batches_shuffles_and_holds_data_on_device(dataset):
    resident = BatchLoader(dataset, "train", 4, seed=3, on_device=True)
    streamed = BatchLoader(dataset, "train", 4, seed=3, on_device=False)
    assert len(resident) == 17 // 4
    first = list(resident.epoch(0))
    for a, b in zip(first, streamed.epoch(0)):
        for name in ("signals", "mri", "targets", "index"):
            np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))
    batch = first[0]
    assert batch["signals"].shape == (4, 9, 16, 15) and batch["signals"].dtype == jnp.float32
    assert batch["mri"].shape == (4, 100, 100) and batch["targets"].shape == (4, 3, 100, 100)
    np.testing.assert_array_equal(batch["targets"], dataset.read("targets", np.asarray(batch["index"])))
    seen = np.concatenate([np.asarray(b["index"]) for b in first])
    assert len(set(seen)) == len(seen) and set(seen) <= set(dataset.indices("train"))
    again = np.concatenate([np.asarray(b["index"]) for b in resident.epoch(0)])
    other = np.concatenate([np.asarray(b["index"]) for b in resident.epoch(1)])
    assert np.array_equal(seen, again) and not np.array_equal(seen, other)
    everything = BatchLoader(dataset, "train", 1, shuffle=False, drop_last=False, on_device=False)
    assert [int(b["index"][0]) for b in everything] == dataset.indices("train").tolist()


def test_loader_limits_the_split_and_carries_extra_inputs(dataset):
    """`limit` keeps the split's first phantoms; `extra` arrays (a row per phantom of the
    store) arrive in every batch at the batch's phantoms, resident or streamed."""
    extra = np.arange(dataset.count, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    for on_device in (True, False):
        loader = BatchLoader(dataset, "train", 2, seed=1, on_device=on_device, limit=6, extra={"prepared": extra})
        assert loader.indices.tolist() == dataset.indices("train")[:6].tolist() and len(loader) == 3
        for batch in loader.epoch(0):
            np.testing.assert_array_equal(np.asarray(batch["prepared"])[:, 0], np.asarray(batch["index"]))
    with pytest.raises(ValueError, match="row per phantom"):
        BatchLoader(dataset, "train", 2, extra={"prepared": extra[:3]})
    with pytest.raises(ValueError, match="new name"):
        BatchLoader(dataset, "train", 2, extra={"mri": extra})


@pytest.mark.slow
def test_four_devices_generate_the_same_store_and_shard_batches(store, tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, json
        import nirst_jax, jax
        jax.config.update("jax_enable_x64", True)  # as in this test process (conftest)
        from nirst_jax.datasets import BatchLoader, Dataset, PhantomSimulator, SimulationConfig, simulate_dataset
        assert jax.device_count() == 4
        folder = simulate_dataset(sys.argv[1], SimulationConfig(mesh_spacing_mm=5.0), **{ARGS!r})
        batch = next(iter(BatchLoader(Dataset(folder), "train", 8)))
        print(json.dumps([len(batch["signals"].sharding.device_set), batch["signals"].addressable_shards[0].data.shape[0]]))
        """
    )
    env = dict(os.environ, XLA_FLAGS=os.environ["XLA_FLAGS"] + " --xla_force_host_platform_device_count=4")
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data")], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [4, 2]
    assert store_files(tmp_path / "data") == store_files(store)


def test_show_writes_a_png(store, tmp_path):
    out = tmp_path / "sample.png"
    assert main(["show", str(store), "--index", "3", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["show", str(store), "--index", "99"]) == 2


def test_two_processes_split_the_shards_and_give_the_same_store(store, tmp_path):
    # Without jax.distributed the barriers are skipped, so run the "processes" in turn.
    folder = tmp_path / "data"
    with pytest.raises(ValueError, match="shard 1 of .* is missing"):
        simulate_dataset(folder, CONFIG, **ARGS, process_index=0, process_count=2)
    assert sorted(p.name for p in (folder / "shards").iterdir()) == ["shard-00000", "shard-00002"]
    simulate_dataset(folder, CONFIG, **ARGS, process_index=1, process_count=2)
    simulate_dataset(folder, CONFIG, **ARGS, process_index=0, process_count=2, resume=True)
    assert store_files(folder) == store_files(store)


@pytest.mark.slow
def test_realistic_phantoms_paint_the_fibroglandular_region_in_truth_and_mri():
    """Where only the fibroglandular region lies, the truth holds its values and the MRI its grey."""
    import equinox as eqx

    from nirst_jax.datasets import PhantomSimulator
    from nirst_jax.phantoms import inside_glandular, phantom_config, sample_phantom

    config = SimulationConfig(phantoms=phantom_config("realistic"), mesh_spacing_mm=6.0, image_size=48)
    simulator = PhantomSimulator.create(config)
    keys = jax.random.split(jax.random.key(1), 6)
    out = jax.tree.map(np.asarray, jax.jit(jax.vmap(simulator))(keys))
    centers = config.grid().centers()
    grey = config.phantoms.decoupling.glandular_grey
    checked = 0
    for i, key in enumerate(keys):
        if not out["glandular_present"][i]:
            continue
        p = sample_phantom(config.phantoms, purpose_key(key, "phantom"))
        np.testing.assert_allclose(p.glandular, out["glandular"][i], rtol=1e-6)  # the same draw as the simulator's
        # The region's core (mean radius × 0.8: off its edge pixels), away from every inclusion
        # (MRI shapes may be shifted by up to 1 mm).
        core = np.array(inside_glandular(eqx.tree_at(lambda q: q.glandular_radius, p, 0.8 * p.glandular_radius), centers))
        for c, r, here in zip(out["centers"][i], out["radii"][i], out["present"][i]):
            if here:
                core &= np.linalg.norm(centers - c, axis=-1) > r + 3.0
        if core.sum() < 5:
            continue
        np.testing.assert_allclose(out["targets"][i][:, core], np.repeat(out["glandular"][i][:, None], core.sum(), 1), rtol=1e-5)
        assert abs(out["mri"][i][core].mean() - grey) < 4 * grey * 0.04 / np.sqrt(core.sum()), out["mri"][i][core].mean()
        checked += 1
    assert checked >= 2
