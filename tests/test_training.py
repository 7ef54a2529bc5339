"""Training: end to end on a tiny dataset, exact resume, devices, the physics loss, inference, CLI."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from _killed_cli import run_killed
from nirst_jax.cli import main
from nirst_jax.datasets import Dataset, SimulationConfig, simulate_dataset
from nirst_jax.models import STUDY_ARCHITECTURE, ModelSpec
from nirst_jax.recon import calibrate
from nirst_jax.training import Checkpoints, PhysicsLoss, TrainConfig, TrainedNetwork, Trainer, masked_mse, read_log, train
from nirst_jax.training._config import PHYSICS_LOSS_SETTINGS

SIZE = 32
# These tests exercise the trainer, not the architecture (tests/test_models.py covers the default
# one): the study's architecture keeps them within the default suite's time budget.
TINY = ModelSpec("znet", image_size=SIZE, width=0.125, **STUDY_ARCHITECTURE)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """256 phantoms on a 5 mm mesh (485 nodes), 32×32 images: 179 train, 51 validation, 26 test."""
    config = SimulationConfig(mesh_spacing_mm=5.0, image_size=SIZE)
    folder = simulate_dataset(tmp_path_factory.mktemp("tiny") / "data", config, 256, seed=3, config_name="tiny", progress=False)
    return Dataset(folder)


def mean_predictor_mse(dataset, indices):
    """Normalised MSE of predicting the training mean everywhere (0 after normalisation)."""
    targets = dataset.normalisation.targets(dataset.read("targets", indices))
    return float(masked_mse(jnp.zeros_like(targets), targets, dataset.image_mask))


def test_tiny_training_beats_the_mean_predictor_and_inference_matches(dataset, tmp_path):
    config = TrainConfig(model=ModelSpec("znet", image_size=SIZE, width=0.25, **STUDY_ARCHITECTURE), epochs=12, batch_size=32)
    trainer = train(dataset, tmp_path / "run", config, progress=False)
    test = dataset.indices("test")
    best = TrainedNetwork(tmp_path / "run", "best")
    metrics = trainer.evaluate(test, trainer.checkpoints.restore("best", trainer.state))
    baseline = mean_predictor_mse(dataset, test)
    assert metrics["data"].mean() < 0.6 * baseline, (metrics["data"].mean(), baseline)
    # The inference path (raw ln A and MRI in, µM / % out) gives the same images.
    images = best(dataset.read("ln_amplitude", test), dataset.read("mri", test))
    mask = dataset.image_mask
    mse = ((images - dataset.read("targets", test)) ** 2)[:, :, mask].mean(-1)
    np.testing.assert_allclose(mse, metrics["mse"], rtol=2e-3)
    assert (images[:, :, ~mask] == 0).all()
    # Sets of any size run padded to one batch shape: one compiled program; one phantom runs alone.
    fewer = best(dataset.read("ln_amplitude", test[:3]), dataset.read("mri", test[:3]))
    np.testing.assert_allclose(fewer, images[:3], rtol=1e-5, atol=1e-4)
    assert best._predict._cache_size() == 1
    single = best(dataset.read("ln_amplitude", test[0])[0], dataset.read("mri", test[0])[0])
    np.testing.assert_allclose(single, images[0], rtol=1e-5, atol=1e-4)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(12))
    assert records[-1]["train_data"] < 0.5 * records[0]["train_data"]
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0
    trainer.close()  # releases orbax's managers; the run can no longer save
    with pytest.raises(ValueError, match="were closed"):
        trainer.fit()


def test_resume_inside_an_epoch_equals_uninterrupted_training(dataset, tmp_path):
    # 5 steps per epoch; fibre dropout and symmetry augmentation draw from the step, so resume replays them.
    config = TrainConfig(model=TINY, epochs=2, batch_size=32, fibre_dropout=0.5, symmetry_augmentation=True)
    n = 4
    Trainer(dataset, tmp_path / "a", config, progress=False).fit(stop_after_steps=n)
    inputs = (tmp_path / "a" / "inputs.npz").stat().st_mtime_ns
    resumed = Trainer(dataset, tmp_path / "a", config, resume=True, progress=False)
    assert (tmp_path / "a" / "inputs.npz").stat().st_mtime_ns == inputs  # the run's normalisation is never replaced
    assert int(resumed.state.step) == n
    resumed.fit(stop_after_steps=2 * n)
    straight = Trainer(dataset, tmp_path / "b", config, progress=False)
    assert straight.steps is resumed.steps  # same config, data and devices: compiled once per process
    straight.fit(stop_after_steps=2 * n)
    assert int(resumed.state.step) == int(straight.state.step) == 2 * n
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(straight.state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert len(resumed.records) == len(straight.records) == 1  # epoch 0 ended at step 5, inside the resumed part
    for key in ("train_loss", "val_data"):
        assert abs(resumed.records[0][key] - straight.records[0][key]) < 1e-5
    # Throughput counts the steps this process ran: 1 of epoch 0's 5 after the resume.
    for trainer, steps in ((resumed, 1), (straight, 5)):
        record = trainer.records[0]
        assert record["samples_per_s"] * record["seconds"] == pytest.approx(steps * 32, rel=1e-9)
    with pytest.raises(ValueError, match="already holds a training run"):
        Trainer(dataset, tmp_path / "a", config, progress=False)
    with pytest.raises(ValueError, match="config differs"):
        Trainer(dataset, tmp_path / "a", config.replace(learning_rate=0.001), resume=True, progress=False)
    with pytest.raises(ValueError, match="either it or active_fibres"):
        config.replace(active_fibres=8)
    with pytest.raises(ValueError, match="the dataset has 9 and 32"):
        Trainer(dataset, tmp_path / "c", config.replace(model=ModelSpec("znet", image_size=64)), progress=False)


def test_resume_identifies_the_dataset_by_content_and_keeps_the_schedule(dataset, tmp_path):
    """A moved store resumes; a store regenerated at the same path, or new epochs under cosine, are refused."""
    config = TrainConfig(model=TINY, epochs=2, batch_size=32)
    data = tmp_path / "data"
    shutil.copytree(dataset.folder, data)
    Trainer(data, tmp_path / "run", config, progress=False).fit(stop_after_steps=1)
    moved = tmp_path / "moved"
    data.rename(moved)
    Trainer(moved, tmp_path / "run", config, resume=True, progress=False)  # same content elsewhere: fine
    simulate_dataset(data, SimulationConfig(mesh_spacing_mm=5.0, image_size=SIZE), 40, seed=4, progress=False)
    with pytest.raises(ValueError, match="trained on another dataset"):
        Trainer(data, tmp_path / "run", config, resume=True, progress=False)
    cosine = config.replace(schedule="cosine")
    Trainer(moved, tmp_path / "cosine", cosine, progress=False).fit(stop_after_steps=1)
    with pytest.raises(ValueError, match="cosine learning-rate schedule"):
        Trainer(moved, tmp_path / "cosine", cosine.replace(epochs=3), resume=True, progress=False)
    Trainer(moved, tmp_path / "run", config.replace(epochs=3), resume=True, progress=False)  # constant rate: fine


def test_checkpoints_written_at_an_interval_keep_the_best_epochs_state(dataset, tmp_path):
    """With writes deferred (interval longer than the run), nothing is written at epoch 0's end;
    the stop writes `last` and the copy of epoch 0's state as `best`, equal to what writing at
    every epoch stores (the training step donates its buffers, so a bare reference would not)."""
    config = TrainConfig(model=TINY, epochs=2, batch_size=32)  # 5 steps per epoch
    runs = {}
    for name, interval in (("every", 0.0), ("deferred", 1e9)):
        trainer = Trainer(dataset, tmp_path / name, config, progress=False, checkpoint_interval_s=interval)
        writes, save = [], trainer.checkpoints.save
        trainer.checkpoints.save = lambda kind, state: (writes.append((kind, int(state.step))), save(kind, state))
        trainer.fit(stop_after_steps=7)  # epoch 0 ends at step 5; the stop inside epoch 1 writes
        expected = [("best", 5), ("last", 5), ("last", 7)] if interval == 0 else [("best", 5), ("last", 7)]
        assert writes == expected
        assert (trainer.checkpoints.latest_step("best"), trainer.checkpoints.latest_step("last")) == (5, 7)
        runs[name] = {kind: trainer.checkpoints.restore(kind, trainer.state) for kind in ("best", "last")}
        trainer.close()
    for kind in ("best", "last"):
        for a, b in zip(jax.tree.leaves(runs["every"][kind]), jax.tree.leaves(runs["deferred"][kind])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(runs["deferred"]["best"].step) == 5
    with pytest.raises(ValueError, match="checkpoint_interval_s must be ≥ 0"):
        Trainer(dataset, tmp_path / "bad", config, progress=False, checkpoint_interval_s=-1)


def test_a_run_that_starts_over_discards_a_best_checkpoint_written_before(dataset, tmp_path):
    """A run killed between its first `best` and `last` writes starts over on resume; its stale
    `best` (here: the untrained state, stored as step 5) is deleted, not kept because the new
    run's best has the same step."""
    config = TrainConfig(model=TINY, epochs=1, batch_size=32)  # 5 steps
    first = Trainer(dataset, tmp_path / "run", config, progress=False)
    untrained = jax.tree.map(np.asarray, first.state)
    first.checkpoints.save("best", first.state._replace(step=np.asarray(5, np.int32)))
    first.close()
    again = Trainer(dataset, tmp_path / "run", config, resume=True, progress=False)
    assert again.checkpoints.latest_step("best") is None
    again.fit()
    best = again.checkpoints.restore("best", again.state)
    assert int(best.step) == 5
    assert any(not np.array_equal(np.asarray(a), b) for a, b in zip(jax.tree.leaves(best.params), jax.tree.leaves(untrained.params)))
    again.close()


def test_the_writer_deletes_unfinished_saves_before_its_managers_open(tmp_path):
    """A killed save's temporary folder is gone when the writer's `Checkpoints` returns (orbax's
    background cleanup raced the managers' listing), and a reader leaves it alone."""
    stale = tmp_path / "checkpoints" / "last" / "10.orbax-checkpoint-tmp" / "default.orbax-checkpoint-tmp"
    stale.mkdir(parents=True)
    (stale / "manifest.ocdbt").write_bytes(b"partial")
    reader = Checkpoints(tmp_path)
    assert stale.exists() and reader.latest_step("last") is None
    reader.close()
    writer = Checkpoints(tmp_path, writer=True)
    assert not stale.parent.exists()
    assert writer.latest_step("last") is None
    writer.close()


@pytest.mark.slow
def test_train_killed_mid_write_resumes_to_the_uninterrupted_run(dataset, tmp_path):
    """A real `nirst train` SIGKILLed in its epoch-end writes (the log half written; then the log
    in place and the checkpoint half written) resumes to the parameters and log of an
    uninterrupted run."""
    command = ["train", "--data", str(dataset.folder), "--epochs", "2", "--batch-size", "32", "--width", "0.125",
               "--margin", "0", "--upsampling", "transposed", "--checkpoint-interval", "0", "--no-progress", "--out"]

    def nirst(run, fragment="never-renamed", occurrence=1, *extra):
        done = run_killed(fragment, occurrence, *command, str(run), *extra)
        return done.returncode, done.stderr

    code, errors = nirst(tmp_path / "straight")
    assert code == 0, errors
    run = tmp_path / "killed"
    assert nirst(run, "metrics.jsonl", 2)[0] == -9  # epoch 1's log written, not in place
    assert [r["epoch"] for r in read_log(run / "metrics.jsonl")] == [0]
    # Epoch 1 again: its log is in place, its checkpoint half written when the process dies.
    assert nirst(run, "checkpoints/last", 1, "--resume")[0] == -9
    assert [r["epoch"] for r in read_log(run / "metrics.jsonl")] == [0, 1]
    assert Checkpoints(run).latest_step("last") == 5
    code, errors = nirst(run, "never-renamed", 1, "--resume")
    assert code == 0, errors
    logs = [read_log(folder / "metrics.jsonl") for folder in (run, tmp_path / "straight")]
    assert [r["epoch"] for r in logs[0]] == [0, 1]
    for resumed, straight in zip(*logs):
        for key in ("step", "train_loss", "val_data", "val_physics"):
            assert resumed[key] == pytest.approx(straight[key], rel=1e-6), key
    networks = [TrainedNetwork(folder, "last") for folder in (run, tmp_path / "straight")]
    assert networks[0].step == networks[1].step == 2 * 5
    for a, b in zip(jax.tree.leaves(nnx.state(networks[0].model)), jax.tree.leaves(nnx.state(networks[1].model))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert not list(run.rglob(".*.tmp"))  # a resumed run clears what the killed writes left


@pytest.mark.extended
def test_one_and_four_devices_give_the_same_trajectory(dataset, tmp_path):
    script = textwrap.dedent(
        f"""
        import json, jax, numpy as np
        from nirst_jax.models import ModelSpec
        from nirst_jax.training import TrainConfig, Trainer
        assert len(jax.devices()) == 4
        config = TrainConfig(model=ModelSpec("znet", image_size={SIZE}, width=0.125, margin=0, upsampling="transposed"), epochs=2, batch_size=32)
        out = {{}}
        for n in (1, 4):
            trainer = Trainer({str(dataset.folder)!r}, {str(tmp_path)!r} + f"/run{{n}}", config, devices=jax.devices()[:n], progress=False)
            trainer.state = trainer.steps.train(trainer.state, next(trainer.loader.epoch(0)), np.float32(0))
            first = float(trainer.state.running[0])
            trainer.fit()  # continues after the first step
            out[n] = {{"first": first, "records": trainer.records}}
        print(json.dumps(out))
        """
    )
    env = dict(os.environ, XLA_FLAGS=os.environ["XLA_FLAGS"] + " --xla_force_host_platform_device_count=4")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    one, four = out["1"], out["4"]
    # Same parameters, same batch: the first loss agrees to float32 rounding (BN statistics
    # are over the whole sharded batch, not per device).
    assert abs(one["first"] - four["first"]) <= 1e-5 * one["first"]
    # Afterwards float32 reduction-order differences grow through Adam's normalisation (a
    # parameter whose gradient is ≈ 0 moves by ±lr either way), so the parameters drift apart
    # by ~lr per element while the loss trajectories stay together.
    assert len(one["records"]) == len(four["records"]) == 2
    for a, b in zip(one["records"], four["records"]):
        for key, tolerance in (("train_loss", 3e-3), ("val_data", 1e-2)):  # eval-mode BN amplifies early differences
            assert abs(a[key] - b[key]) <= tolerance * abs(a[key]), (key, a[key], b[key])


def free_port() -> int:
    import socket

    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


@pytest.mark.extended
def test_fine_tuning_starts_from_the_parent_and_keeps_its_normalisation(dataset, dataset_3mm, tmp_path):
    parent = train(dataset, tmp_path / "parent", TrainConfig(model=TINY, epochs=1, batch_size=32), progress=False)
    best = parent.checkpoints.restore("best", parent.state)
    config = TrainConfig(model=TINY, epochs=1, batch_size=16, physics_weight=1.0, data_weight=0.0,
                         init_from=str(tmp_path / "parent"))
    # Self-supervised on another store (another mesh): the parent's weights, its mean/std, this store's reference.
    child = Trainer(dataset_3mm, tmp_path / "child", config, progress=False)
    for a, b in zip(jax.tree.leaves((child.state.params, child.state.batch_stats)), jax.tree.leaves((best.params, best.batch_stats))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(child.state.step) == 0
    inherited = TrainedNetwork(tmp_path / "parent").normalisation
    np.testing.assert_array_equal(child.normalisation.signal_std, inherited.signal_std)
    np.testing.assert_array_equal(child.normalisation.target_mean, inherited.target_mean)
    np.testing.assert_allclose(child.normalisation.reference, dataset_3mm.reference)
    child.fit()
    assert np.isfinite(child.records[0]["train_physics"])
    with np.load(tmp_path / "child" / "inputs.npz") as stored:
        np.testing.assert_array_equal(stored["signal_std"], inherited.signal_std)
    with pytest.raises(ValueError, match="holds a"):
        Trainer(dataset, tmp_path / "other", config.replace(model=ModelSpec("ynet", image_size=SIZE, width=0.125, **STUDY_ARCHITECTURE)), progress=False)


@pytest.mark.extended
def test_two_processes_train_like_one_process_with_two_devices_and_resume(dataset, tmp_path):
    """jax.distributed on localhost: 2 processes × 1 CPU device, interrupted after 4 steps and
    resumed, give the loss trajectory of 1 process × 2 devices trained straight through."""
    common = f"""
import json, sys, jax
from nirst_jax.models import ModelSpec
from nirst_jax.training import TrainConfig, Trainer, initialize_distributed
config = TrainConfig(model=ModelSpec("znet", image_size={SIZE}, width=0.125, margin=0, upsampling="transposed"), epochs=2, batch_size=32)
"""
    worker = common + f"""
initialize_distributed("127.0.0.1:" + sys.argv[1], 2, int(sys.argv[2]))
assert len(jax.devices()) == 2 and len(jax.local_devices()) == 1
run = {str(tmp_path / "multi")!r}
Trainer({str(dataset.folder)!r}, run, config, progress=False).fit(stop_after_steps=4)
trainer = Trainer({str(dataset.folder)!r}, run, config, resume=True, progress=False)
assert int(trainer.state.step) == 4
trainer.fit()
print(json.dumps(trainer.records))
"""
    single = common + f"""
assert len(jax.devices()) == 2
trainer = Trainer({str(dataset.folder)!r}, {str(tmp_path / "single")!r}, config, progress=False)
trainer.fit()
print(json.dumps(trainer.records))
"""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    port = str(free_port())
    workers = [
        subprocess.Popen([sys.executable, "-c", worker, port, str(rank)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for rank in (0, 1)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    done = subprocess.run([sys.executable, "-c", single], capture_output=True, text=True, timeout=600,
                          env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert done.returncode == 0, done.stderr[-3000:]
    reference = json.loads(done.stdout.strip().splitlines()[-1])
    for out, _ in outputs:
        records = json.loads(out.strip().splitlines()[-1])
        assert [r["step"] for r in records] == [r["step"] for r in reference] == [5, 10]
        for a, b in zip(records, reference):
            for key in ("train_loss", "val_data", "val_rmse_water"):
                assert abs(a[key] - b[key]) <= 1e-4 * abs(b[key]), (key, a[key], b[key])
    # Process 0 alone wrote the run's files; the checkpoints hold the final step.
    multi = tmp_path / "multi"
    assert [json.loads(line)["epoch"] for line in (multi / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    assert sorted(p.name for p in (multi / "checkpoints" / "last").iterdir() if p.name.isdigit()) == ["10"]


@pytest.fixture(scope="module")
def physics(dataset):
    return PhysicsLoss.for_dataset(dataset)


def test_physics_loss_is_noise_level_at_the_truth(dataset, physics):
    indices = dataset.indices("validation")[:8]
    truth = dataset.normalisation.targets(dataset.read("targets", indices))
    loss = jax.jit(lambda t, s: physics(t, s))
    clean = dataset.normalisation.signals(dataset.read("ln_amplitude_clean", indices))
    noisy = jnp.asarray(dataset.signals(indices))
    far = float(loss(jnp.zeros_like(truth), noisy))  # the mean predictor
    at_truth_clean = float(loss(truth, clean))
    at_truth_noisy = float(loss(truth, noisy))
    # 2 % amplitude noise: E[ln|1 + 0.02 n|²] ≈ 4.0e-4, divided by each wavelength's variance.
    expected = noise_floor(dataset)
    assert at_truth_clean < 1e-4 * far, (at_truth_clean, far)
    assert 0.6 * expected < at_truth_noisy < 1.5 * expected, (at_truth_noisy, expected)


def noise_floor(dataset, noise=0.02):
    """Expected physics term at the truth from amplitude noise alone (normalised units)."""
    floor = np.mean(np.log(np.abs(1 + noise * np.random.default_rng(0).standard_normal(10**6))) ** 2)
    return floor * np.mean(1 / np.asarray(dataset.normalisation.signal_std) ** 2)


@pytest.fixture(scope="module")
def dataset_3mm(tmp_path_factory):
    """40 phantoms on a 3 mm mesh (1267 nodes), 32×32 images."""
    config = SimulationConfig(mesh_spacing_mm=3.0, image_size=SIZE)
    folder = simulate_dataset(tmp_path_factory.mktemp("fine") / "data", config, 40, seed=5, config_name="fine", progress=False)
    return Dataset(folder)


@pytest.mark.slow
def test_physics_loss_on_a_coarser_mesh_is_at_the_noise_floor(dataset_3mm):
    """Physics mesh 3.25 mm, data from a 3 mm mesh: referenced to its own mesh's reference
    phantom, the physics term at the true chromophores is within 1.2× the noise floor
    (measured 1.11×; 1.23× on a 3.5 mm mesh: what is left is the mesh error's dependence on each
    phantom's background, docs/training.md); referenced to the data mesh's reference (the old
    formula) 3.5×."""
    from nirst_jax.mesh import disk_mesh

    dataset = dataset_3mm
    indices = np.arange(dataset.count)
    truth = jnp.asarray(dataset.normalisation.targets(dataset.read("targets", indices)))
    signals = jnp.asarray(dataset.signals(indices))
    physics = PhysicsLoss.for_dataset(dataset, mesh=disk_mesh(41.0, 3.25))
    floor = noise_floor(dataset)
    at_truth = float(jax.jit(lambda t, s: physics(t, s))(truth, signals))
    assert 0.8 * floor < at_truth < 1.2 * floor, (at_truth / floor)
    # The old formula: the prediction on the physics mesh normalised with the data mesh's reference.
    biased = eqx.tree_at(lambda p: p.normalisation.reference, physics, jnp.asarray(dataset.reference, jnp.float32))
    assert float(jax.jit(lambda t, s: biased(t, s))(truth, signals)) > 3 * floor
    # On the data's own mesh both references are the same computation.
    own = PhysicsLoss.for_dataset(dataset)
    np.testing.assert_allclose(own.normalisation.reference, dataset.reference, atol=1e-4)


@pytest.mark.slow
def test_physics_loss_gradient_matches_finite_differences(dataset, physics):
    indices = dataset.indices("validation")[:2]
    signals = jnp.asarray(dataset.signals(indices), jnp.float64)
    truth = jnp.asarray(dataset.normalisation.targets(dataset.read("targets", indices)), jnp.float64)
    prediction = truth + 0.3 * jax.random.normal(jax.random.key(0), truth.shape, jnp.float64)
    loss = jax.jit(lambda t: physics(t, signals))
    grad = jax.jit(jax.grad(lambda t: physics(t, signals)))(prediction)
    assert grad.dtype == jnp.float64 and bool(jnp.isfinite(grad).all())
    for seed in range(3):
        direction = jax.random.normal(jax.random.key(seed + 1), truth.shape, jnp.float64)
        h = 1e-4
        numeric = (loss(prediction + h * direction) - loss(prediction - h * direction)) / (2 * h)
        np.testing.assert_allclose(float(jnp.vdot(grad, direction)), float(numeric), rtol=1e-5)
    # Absurd predictions are clipped to the bounds: loss and gradient stay finite.
    extreme = prediction.at[:, 0].set(1e4).at[:, 1].set(-1e4)
    assert bool(jnp.isfinite(loss(extreme)))
    assert bool(jnp.isfinite(jax.grad(lambda t: physics(t, signals))(extreme)).all())


@pytest.mark.extended
def test_hybrid_training_lowers_the_physics_term_and_warms_up(dataset, tmp_path):
    config = TrainConfig(model=TINY, epochs=2, batch_size=32, physics_weight=1.0, physics_warmup_epochs=2)
    trainer = train(dataset, tmp_path / "hybrid", config, progress=False)
    first, last = trainer.records
    assert (first["physics_weight"], last["physics_weight"]) == (0.5, 1.0)
    assert np.isfinite([r[k] for r in trainer.records for k in ("train_loss", "val_physics")]).all()
    assert last["train_physics"] < first["train_physics"], (first, last)
    assert last["train_data"] < first["train_data"], (first, last)


def test_physics_from_epoch_sets_when_the_physics_weight_acts():
    """`physics_from_epoch`: weight 0 before it, the warm-up counted from it; settings under
    which the physics term never acts, or has nothing to follow, are refused."""
    config = TrainConfig(model=TINY, epochs=6, physics_weight=2.0, physics_from_epoch=3, physics_warmup_epochs=2)
    assert [config.physics_weight_at(e) for e in range(6)] == [0.0, 0.0, 0.0, 1.0, 2.0, 2.0]
    assert [config.replace(physics_warmup_epochs=0).physics_weight_at(e) for e in (2, 3)] == [0.0, 2.0]
    with pytest.raises(ValueError, match="physics_from_epoch is 3 but physics_weight is 0"):
        config.replace(physics_weight=0.0)
    with pytest.raises(ValueError, match=r"physics_from_epoch \(6\) must be below epochs \(6\)"):
        config.replace(physics_from_epoch=6)
    with pytest.raises(ValueError, match="physics_from_epoch must be an integer ≥ 0, got -1"):
        config.replace(physics_from_epoch=-1)
    with pytest.raises(ValueError, match="needs a supervised term"):
        config.replace(data_weight=0.0)


def test_a_run_is_the_same_run_with_other_physics_settings_only_until_its_physics_acts():
    """`same_run_until`, the rule a resume and the study's hybrid branch follow: physics-loss
    settings may differ until either config's physics term acts (here after 3 epochs of 10
    steps), epochs only under a constant rate, nothing else; a network with physics inside keeps
    its physics mesh."""
    base = TrainConfig(model=TINY, epochs=6)
    late = base.replace(physics_weight=0.1, physics_from_epoch=3, physics_mesh_spacing_mm=4.0)
    assert base.same_run_until(late, 30, 10) and late.same_run_until(base, 30, 10)
    assert not base.same_run_until(late, 31, 10) and not late.same_run_until(base, 31, 10)
    assert base.same_run_until(base.replace(epochs=2), 10**6, 10)
    assert late.changed_settings(late.replace(epochs=5, schedule="cosine")) == {"epochs", "schedule"}
    cosine = base.replace(schedule="cosine")
    assert not cosine.same_run_until(cosine.replace(epochs=2), 0, 10)
    assert not base.same_run_until(base.replace(learning_rate=0.01), 0, 10)
    assert base.fixed_changes(late.replace(learning_rate=0.01, epochs=5)) == {"learning_rate"}
    assert base.fixed_changes(base.replace(schedule="cosine", epochs=5)) == {"schedule"}
    lgn = TrainConfig(model=ModelSpec("lgn", image_size=SIZE, width=0.125, iterations=2, basis_size=8), epochs=6)
    assert "physics_mesh_spacing_mm" not in lgn.free_before_physics
    assert not lgn.same_run_until(lgn.replace(physics_mesh_spacing_mm=4.0), 0, 10)
    assert base.free_before_physics == set(PHYSICS_LOSS_SETTINGS)


@pytest.mark.slow
def test_physics_joining_late_leaves_the_earlier_epochs_to_the_data_only_run(dataset, dataset_3mm, tmp_path):
    """A semi-supervised run whose physics term joins at epoch 1 (22 steps of 8): its first epoch
    is the data-only run's to the bit (no unlabelled batch read, no physics computed or logged),
    then the term acts. The data-only run, resumed with the physics settings before its physics
    acted, and the late run stopped 2 steps into the physics and resumed, each equal the late run
    straight through; once the physics acted, other physics settings are refused."""
    data_only = TrainConfig(model=TINY, epochs=2, batch_size=8)
    late = data_only.replace(physics_weight=1.0, physics_from_epoch=1, unlabelled_data=str(dataset_3mm.folder))
    plain = Trainer(dataset, tmp_path / "plain", data_only, progress=False)
    steps = plain.steps_per_epoch
    plain.fit(stop_after_steps=steps)
    plain.close()
    first = Trainer(dataset, tmp_path / "late", late, progress=False)
    first.fit(stop_after_steps=steps)
    for a, b in zip(jax.tree.leaves(first.state), jax.tree.leaves(plain.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    (record,) = first.records
    assert (record["physics_weight"], record["train_physics"], record["val_physics"]) == (0.0, 0.0, 0.0)
    first.fit(stop_after_steps=steps + 2)
    first.close()
    straight = Trainer(dataset, tmp_path / "straight", late, progress=False)
    straight.fit()
    last = straight.records[-1]
    assert last["physics_weight"] == 1.0 and last["train_physics"] > 0 and last["val_physics"] > 0, last
    for folder in ("late", "plain"):  # stopped inside the physics, and data-only before it
        resumed = Trainer(dataset, tmp_path / folder, late, resume=True, progress=False)
        resumed.fit()
        for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(straight.state)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        assert resumed.records[-1]["train_physics"] == pytest.approx(last["train_physics"], rel=1e-5)
        assert json.loads((tmp_path / folder / "config.json").read_text())["train"]["physics_from_epoch"] == 1
        resumed.close()
    with pytest.raises(ValueError, match="the physics term of its config or of this one acted in its first 44 steps"):
        Trainer(dataset, tmp_path / "straight", data_only, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"differs from this one in learning_rate \(only"):
        Trainer(dataset, tmp_path / "straight", late.replace(learning_rate=0.01, physics_weight=2.0), resume=True, progress=False)


@pytest.mark.slow
def test_physics_gradient_is_nonzero_and_moves_the_prediction_toward_consistency(dataset, physics):
    """The hybrid objective's physics term reaches the parameters: its gradient is not zero, and a
    small step against it alone lowers the physics term (the hybrid training test's falling
    physics term could also come from the data term)."""
    from nirst_jax.training import Steps, initial_state

    import optax

    graphdef, state = initial_state(TINY.build(0), optax.sgd(0.0))
    steps = Steps(graphdef, optax.sgd(0.0), dataset.normalisation, dataset.image_mask, physics=physics)
    indices = dataset.indices("train")[:8]
    signals, mri = jnp.asarray(dataset.signals(indices)), jnp.asarray(dataset.read("mri", indices))

    def physics_term(params):
        output, _ = steps.predict(params, state.batch_stats, signals, mri)
        return physics(output, signals)

    value, gradient = jax.jit(jax.value_and_grad(physics_term))(state.params)
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(gradient)))  # optax.global_norm is deprecated
    assert float(norm) > 0 and bool(jnp.isfinite(norm))
    moved = jax.tree.map(lambda p, g: p - 1e-3 * g / norm, state.params, gradient)
    assert float(jax.jit(physics_term)(moved)) < float(value)


@pytest.mark.extended
def test_self_supervised_steps_fit_the_measurements_without_targets(dataset, physics):
    import optax

    from nirst_jax.training import Steps, initial_state

    optimiser = optax.adam(0.005)
    graphdef, state = initial_state(TINY.build(0), optimiser)
    steps = Steps(graphdef, optimiser, dataset.normalisation, dataset.image_mask, physics=physics, data_weight=0.0)
    indices = dataset.indices("train")[:16]
    batch = {
        "signals": jnp.asarray(dataset.signals(indices)),
        "mri": jnp.asarray(dataset.read("mri", indices)),
        "targets": jnp.full((16, 3, SIZE, SIZE), jnp.nan, jnp.float32),  # never looked at
    }
    losses = []
    for _ in range(4):
        state = steps.train(state, batch, jnp.float32(1.0))
        losses.append(float(state.running[2]) - sum(losses))
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    assert all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(state.params))


@pytest.mark.slow
def test_semi_supervised_step_takes_the_physics_on_the_unlabelled_part(dataset, physics):
    """With an unlabelled part in the batch, the network runs on both parts at once, the
    supervised term is the labelled part's and the physics term the unlabelled part's (with
    its own physics loss); the labelled part's own physics term is not what is logged."""
    import optax

    from nirst_jax.training import Steps, initial_state

    graphdef, state = initial_state(TINY.build(0), optax.sgd(0.0))
    # The unlabelled store's loss differs from the labelled one's (another reference), so taking
    # the wrong one shows.
    other = eqx.tree_at(lambda p: p.normalisation.reference, physics, physics.normalisation.reference + 1.0)
    steps = Steps(graphdef, optax.sgd(0.0), dataset.normalisation, dataset.image_mask, physics=physics,
                  unlabelled_physics=other)
    labelled, unlabelled = dataset.indices("train")[:8], dataset.indices("validation")[:8]
    part = lambda rows: {"signals": jnp.asarray(dataset.signals(rows)), "mri": jnp.asarray(dataset.read("mri", rows))}  # noqa: E731
    batch = {**part(labelled), "targets": jnp.asarray(dataset.read("targets", labelled)), "unlabelled": part(unlabelled)}
    output, _ = steps.predict(state.params, state.batch_stats,
                              jnp.concatenate([batch["signals"], batch["unlabelled"]["signals"]]),
                              jnp.concatenate([batch["mri"], batch["unlabelled"]["mri"]]), train=True)
    expected_data = float(masked_mse(output[:8], dataset.normalisation.targets(batch["targets"]), dataset.image_mask))
    expected_physics = float(other(output[8:], batch["unlabelled"]["signals"]))
    for wrong in (physics(output[8:], batch["unlabelled"]["signals"]), physics(output[:8], batch["signals"])):
        assert abs(float(wrong) - expected_physics) > 0.05 * expected_physics
    state = steps.train(state, batch, jnp.float32(0.5))
    total, data, physics_term, _ = np.asarray(state.running)
    np.testing.assert_allclose([data, physics_term, total], [expected_data, expected_physics, expected_data + 0.5 * expected_physics],
                               rtol=1e-4)
    with pytest.raises(ValueError, match="needs Steps\\(unlabelled_physics"):
        Steps(graphdef, optax.sgd(0.0), dataset.normalisation, dataset.image_mask, physics=physics).train(
            state, batch, jnp.float32(0.5))


@pytest.mark.slow
def test_semi_supervised_training_reads_an_unlabelled_store_and_resumes_exactly(dataset, dataset_3mm, tmp_path):
    """`unlabelled_data`: the 3 mm store's training split (28 phantoms: 3 batches of 8 per
    pass) beside the labelled batches; a run stopped after 4 steps (inside the second pass) and
    resumed equals one run straight to 7; a resume on other unlabelled content is refused."""
    config = TrainConfig(model=TINY, epochs=1, batch_size=8, physics_weight=1.0, unlabelled_data=str(dataset_3mm.folder))
    Trainer(dataset, tmp_path / "a", config, progress=False).fit(stop_after_steps=4)
    recorded = json.loads((tmp_path / "a" / "config.json").read_text())["unlabelled_dataset"]
    assert recorded == {"folder": str(dataset_3mm.folder.absolute()), "sha256": dataset_3mm.fingerprint}
    resumed = Trainer(dataset, tmp_path / "a", config, resume=True, progress=False)
    assert len(resumed.unlabelled_loader) == 3
    resumed.fit(stop_after_steps=7)
    straight = Trainer(dataset, tmp_path / "b", config, progress=False)
    straight.fit(stop_after_steps=7)
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(straight.state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert float(straight.state.running[2]) > 0  # the physics term ran
    with pytest.raises(ValueError, match="physics_weight > 0 and data_weight > 0"):
        config.replace(physics_weight=0.0)
    with pytest.raises(ValueError, match="fewer than one batch of 32"):
        Trainer(dataset, tmp_path / "c", config.replace(batch_size=32), progress=False)
    stored = json.loads((tmp_path / "b" / "config.json").read_text())
    stored["unlabelled_dataset"]["sha256"] = "0" * 64
    (tmp_path / "b" / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="its unlabelled store .* has other content"):
        Trainer(dataset, tmp_path / "b", config, resume=True, progress=False)


@pytest.mark.slow  # ≈ 45–110 s on 2 cores, most of it compilation: CI's slow tier
def test_train_and_reconstruct_cli(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", str(dataset.folder), "--epochs", "1", "--batch-size", "32", "--width", "0.125", "--no-progress", "--out", str(run)]
    assert main(argv) == 0
    assert main(argv) == 2  # the folder holds a run: needs --resume
    assert "--resume" in capsys.readouterr().err
    assert main(argv[:4] + ["2"] + argv[5:] + ["--resume"]) == 0
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1]

    index = int(dataset.indices("test")[0])
    sample = dataset.sample(index)
    np.savez(
        tmp_path / "data.npz",
        ln_amplitude=sample["ln_amplitude"],
        wavelengths_nm=np.asarray(dataset.config.wavelengths_nm),
        nodes=dataset.mesh.nodes,
        elements=dataset.mesh.elements,
    )
    np.save(tmp_path / "mri.npy", sample["mri"])
    out = tmp_path / "recon"
    args = ["reconstruct", "--method", "znet", "--checkpoint", str(run), "--data", str(tmp_path / "data.npz"), "--mri", str(tmp_path / "mri.npy"), "--out", str(out)]
    assert main(args) == 0
    with np.load(out / "reconstruction.npz") as result:
        # The command must hand the file's data to the network unchanged. What the network
        # computes is checked independently in test_tiny_training_beats_the_mean_predictor...
        # (TrainedNetwork against the trainer's own evaluation in normalised units).
        expected = TrainedNetwork(run)(sample["ln_amplitude"], sample["mri"])
        np.testing.assert_allclose(result["images"], expected, rtol=1e-5, atol=1e-5)
        assert result["chromophores_nodes"].shape == (3, dataset.mesh.n_nodes)
    summary = json.loads((out / "convergence.json").read_text())
    assert summary["network"] == "znet" and np.isfinite(summary["misfit"][0])
    assert (out / "reconstruction.png").stat().st_size > 0
    # --refine N: DRI steps centred on the network's output lower the misfit of its images.
    assert main(args[:-1] + [str(tmp_path / "refined"), "--refine", "2"]) == 0
    refined = json.loads((tmp_path / "refined" / "convergence.json").read_text())
    assert refined["refine_steps"] >= 1 and refined["misfit"][-1] < refined["misfit"][0]
    assert main(["reconstruct", "--method", "dri", "--refine", "2"] + args[5:]) == 2
    assert "--refine" in capsys.readouterr().err
    # --symmetry-average: the network's images averaged over the disk's 8 symmetries.
    assert main(args[:-1] + [str(tmp_path / "averaged"), "--symmetry-average"]) == 0
    with np.load(tmp_path / "averaged" / "reconstruction.npz") as result:
        from nirst_jax.evaluation import SymmetryAveraged

        averaged = SymmetryAveraged.for_network(TrainedNetwork(run))(sample["ln_amplitude"][None], sample["mri"][None])[0]
        np.testing.assert_allclose(result["images"], averaged, rtol=1e-5, atol=1e-5)
        assert np.abs(result["images"] - expected).max() > 1e-3  # a tiny network is far from equivariant
    assert len(json.loads((tmp_path / "averaged" / "convergence.json").read_text())["symmetry_average"]) == 8
    assert main(["reconstruct", "--method", "dri", "--symmetry-average"] + args[5:]) == 2
    assert "--symmetry-average" in capsys.readouterr().err
    np.save(tmp_path / "mri_big.npy", np.zeros((40, 40)))
    assert main(args[:-4] + ["--mri", str(tmp_path / "mri_big.npy"), "--out", str(out)]) == 2
    assert "32×32" in capsys.readouterr().err
    assert main(["reconstruct", "--method", "dri", "--checkpoint", str(run)] + args[5:]) == 2
    assert main(["reconstruct", "--method", "lgn"] + args[3:]) == 2  # a Z-Net run is not a learned Gauss-Newton
    assert "--model lgn" in capsys.readouterr().err


@pytest.mark.slow
def test_reconstruct_cli_calibrates_the_network_input_against_its_training_mesh(dataset, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(dataset.folder), "--epochs", "1", "--batch-size", "32", "--width", "0.125",
                 "--no-progress", "--out", str(run)]) == 0
    sample = dataset.sample(int(dataset.indices("test")[0]))
    np.save(tmp_path / "mri.npy", sample["mri"])
    # Measured data with system coupling, reconstructed on another mesh (4 mm, the network's is
    # 5 mm) with a reference measurement: the network's input is calibrated against its own
    # training mesh, so it sees what it was trained on (data − reference + its mesh's reference).
    coupling = np.random.default_rng(0).normal(0.0, 0.5, sample["ln_amplitude"].shape)
    np.savez(tmp_path / "coupled.npz", ln_amplitude=sample["ln_amplitude"] + coupling,
             wavelengths_nm=np.asarray(dataset.config.wavelengths_nm))
    np.savez(tmp_path / "reference.npz", ln_amplitude=dataset.reference + coupling,
             wavelengths_nm=np.asarray(dataset.config.wavelengths_nm))
    calibrated = tmp_path / "calibrated"
    assert main(["reconstruct", "--method", "znet", "--checkpoint", str(run), "--data", str(tmp_path / "coupled.npz"),
                 "--reference", str(tmp_path / "reference.npz"), "--mesh-spacing", "4", "--mri", str(tmp_path / "mri.npy"),
                 "--out", str(calibrated)]) == 0
    network = TrainedNetwork(run)
    mine, _ = calibrate(network.forward_model(), sample["ln_amplitude"] + coupling, dataset.reference + coupling)
    with np.load(calibrated / "reconstruction.npz") as result:
        np.testing.assert_allclose(result["images"], network(np.asarray(mine), sample["mri"]), rtol=1e-4, atol=1e-4)
    # That input is near the training data's own (coupling removed; what is left is the fit of the
    # reference's chromophores): measured mean |Δ ln A| 0.025, where calibrating against the
    # command's 4 mm mesh instead would leave the 4-vs-5 mm discretisation offset (0.078).
    clean = np.asarray(sample["ln_amplitude"])
    assert np.abs(np.asarray(mine) - clean).mean() < 0.05


def test_physics_weight_defaults_to_the_best_fine_tuning_weight():
    """`nirst train`: 0 from scratch, `FINE_TUNING_PHYSICS_WEIGHT` with --init-from or
    --physics-from-epoch, as given otherwise."""
    from argparse import Namespace

    from nirst_jax.cli._train import physics_weight
    from nirst_jax.training import FINE_TUNING_PHYSICS_WEIGHT

    def args(weight, init_from=None, physics_from_epoch=0):
        return Namespace(physics_weight=weight, init_from=init_from, physics_from_epoch=physics_from_epoch)

    assert physics_weight(args(None)) == 0.0
    assert physics_weight(args(None, "run")) == FINE_TUNING_PHYSICS_WEIGHT == 0.1
    assert physics_weight(args(None, physics_from_epoch=35)) == FINE_TUNING_PHYSICS_WEIGHT
    assert physics_weight(args(1.0, "run")) == 1.0
    assert physics_weight(args(0.0, "run")) == 0.0
