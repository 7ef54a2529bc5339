"""The training loop: epochs of sharded batches, validation, checkpoints, logs, resume."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from .._atomic import remove_temporaries
from .._build_cache import BuildCache
from ..datasets import BatchLoader, Dataset, SimulationConfig
from ..geometry import Symmetries
from ..learned import build_network
from ..mesh import Mesh
from ..recon import GaussNewton
from ._checkpoints import Checkpoints
from .._fingerprint import json_sha256
from .._version import __version__
from ._config import TrainConfig
from ._first_stage import first_stage_batch_size, first_stage_images
from ._log import read_log, save_loss_figure, write_log
from ..learned import PhysicsLoss
from ._run_folder import CONFIG, INPUTS, LOSS_FIGURE, METRICS, write_run_files
from ._steps import Steps, TrainState, initial_state

CHROMOPHORES = ("HbO", "Hb", "water")
FIGURE_INTERVAL_S = 30.0
"""RUN/loss.png is redrawn at most this often while training (drawing it takes ≈ 0.3 s, a
few % of a small epoch), after the last epoch, and when training stops."""
CHECKPOINT_INTERVAL_S = 60.0
"""Default least time between two checkpoint writes at epoch ends (`Trainer`)."""


def optimiser_for(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam with the configured learning-rate schedule."""
    if config.schedule == "cosine":
        rate = optax.cosine_decay_schedule(config.learning_rate, config.epochs * steps_per_epoch)
    else:
        rate = config.learning_rate
    return optax.adam(rate)


def physics_mesh(config: TrainConfig, simulation: SimulationConfig) -> Mesh | None:
    """The mesh of a run's physics (loss, or inside the network): a mesh of the data's domain
    with edges ≤ `physics_mesh_spacing_mm`, or None for the data's own mesh."""
    if config.physics_mesh_spacing_mm is None:
        return None
    return simulation.mesh(config.physics_mesh_spacing_mm)


def physics_loss_for(config: TrainConfig, dataset: Dataset, signal_mask, normalisation) -> PhysicsLoss | None:
    """The physics loss of a run (None when its weight is 0)."""
    if config.physics_weight == 0:
        return None
    mesh = physics_mesh(config, dataset.config)
    return PhysicsLoss.for_dataset(dataset, mesh=mesh, active=signal_mask, normalisation=normalisation)


def network_for(config: TrainConfig, simulation: SimulationConfig, normalisation, signal_mask, mesh: Mesh | None = None):
    """The freshly initialised network of a run (`build_network`; physics on `physics_mesh`,
    else on `mesh`, the data's)."""
    if config.model.needs_physics:
        mesh = physics_mesh(config, simulation) or mesh
    return build_network(config.model, config.seed, simulation, normalisation, signal_mask, mesh)


# The jitted Steps of runs with the same config, dataset content and devices: a resumed or
# repeated run in one process does not compile its steps again. A run starting from another
# run's checkpoint builds its own (key None): the key does not name the parent's content.
_STEPS: BuildCache[Steps] = BuildCache(4)


def pretrained(config: TrainConfig, dataset: Dataset):
    """(network, normalisation) to start from: `config.init_from`'s best checkpoint and its
    normalisation with `dataset`'s reference; (None, the dataset's normalisation) without it."""
    if config.init_from is None:
        return None, dataset.normalisation
    from ._network import TrainedNetwork

    parent = TrainedNetwork(config.init_from, "best")
    if parent.config.model != config.model:
        raise ValueError(f"init_from {config.init_from} holds a {parent.config.model}, this run trains a {config.model}")
    if parent.data_shape != tuple(dataset.reference.shape):
        raise ValueError(f"init_from {config.init_from} was trained on data {parent.data_shape}, this dataset has {dataset.reference.shape}")
    return parent, parent.normalisation.with_reference(dataset.reference)


class Trainer:
    """Trains one network on one dataset into a run folder.

    Arguments:
        data: dataset store folder (or an open `Dataset`).
        run: the run folder (created; it must not hold another run unless resuming).
        config: the training settings.
        devices: devices to train on, data-parallel (default: all, of every process when
            running under `jax.distributed`: see `initialize_distributed`).
        resume: continue from RUN/checkpoints/last (the config must match, except `epochs` under
            the constant schedule, and the physics-loss settings while the physics term has not
            acted: `TrainConfig.same_run_until`).
        progress: show a progress bar.
        checkpoint_interval_s: write the checkpoints at the end of an epoch only when the last
            write is at least this old (0: every epoch), and always at the end, on an early stop
            and on KeyboardInterrupt. A killed run loses at most this much training plus one
            epoch; with several processes, process 0's clock decides for all. Each write
            takes ≈ 0.6 s (orbax), which every-epoch writes of a network with 5-s epochs pay
            80 times over 40 epochs (`best` and `last`).
    """

    def __init__(
        self,
        data,
        run,
        config: TrainConfig = TrainConfig(),
        *,
        devices: Sequence[jax.Device] | None = None,
        resume: bool = False,
        progress: bool = True,
        checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S,
    ):
        if not checkpoint_interval_s >= 0:
            raise ValueError(f"checkpoint_interval_s must be ≥ 0, got {checkpoint_interval_s!r}")
        self.checkpoint_interval_s = checkpoint_interval_s
        self.dataset = data if isinstance(data, Dataset) else Dataset(data)
        self.run = Path(run)
        self.config = config
        self.devices = list(jax.devices() if devices is None else devices)
        self.main_process = jax.process_index() == 0  # writes the run's files and shows progress
        self.progress = progress and self.main_process
        dataset = self.dataset
        sim = dataset.config
        if config.model.wavelengths != len(sim.wavelengths_nm) or config.model.image_size != sim.image_size:
            raise ValueError(
                f"model expects {config.model.wavelengths} wavelengths and {config.model.image_size}-pixel images; "
                f"the dataset has {len(sim.wavelengths_nm)} and {sim.image_size}"
            )
        self._check_run_folder(resume)
        parent, self.normalisation = pretrained(config, dataset)
        self.validation = dataset.indices("validation")[: config.validation_phantoms]
        setup = sim.measurement_setup()
        if config.fibre_dropout > 0 and not setup.is_ring:
            raise ValueError("fibre_dropout drops rim fibres; the dataset's optodes are placed individually")
        self.signal_mask = setup.measurement_mask(config.active_fibres)
        symmetries = None
        if config.symmetry_augmentation:
            symmetries = Symmetries.nontrivial(setup, setup.layout(config.active_fibres), "symmetry_augmentation")
        train_count = len(dataset.indices("train")[: config.train_phantoms])
        if train_count < config.batch_size:  # before any first stage is computed
            raise ValueError(f"the run trains on {train_count} phantoms, fewer than one batch of {config.batch_size}")
        self.optimiser = optimiser_for(config, train_count // config.batch_size)
        self.unlabelled = self._unlabelled_store(setup, resume)
        if self.unlabelled is not None:
            unlabelled_normalisation = self.normalisation.with_reference(self.unlabelled.reference)
        model = network_for(config, sim, self.normalisation, self.signal_mask, dataset.mesh) if parent is None else parent.model
        graphdef, state = initial_state(model, self.optimiser)
        self.steps = _STEPS.get(
            None if config.init_from is not None else (config, dataset.fingerprint, tuple(self.devices),
                                                        self.unlabelled and self.unlabelled.fingerprint),
            lambda: Steps(
                graphdef,
                self.optimiser,
                self.normalisation,
                dataset.image_mask,
                None if config.active_fibres is None else self.signal_mask,
                physics_loss_for(config, dataset, self.signal_mask, self.normalisation),
                None if self.unlabelled is None else PhysicsLoss.for_dataset(
                    self.unlabelled, mesh=physics_mesh(config, self.unlabelled.config), active=self.signal_mask,
                    normalisation=unlabelled_normalisation),
                data_weight=config.data_weight,
                loss=config.data_loss,
                fibre_dropout=config.fibre_dropout,
                symmetries=symmetries,
                seed=config.seed,
            ),
        )
        extra, started, self.first_stage_rows = None, time.perf_counter(), None
        if hasattr(model, "prepare"):  # a parameter-free first stage (DRI + U-Net): computed once per phantom
            self.first_stage_rows = np.concatenate([dataset.indices("train")[:train_count], self.validation])
            extra = {"prepared": self._first_stage(state, self.first_stage_rows)}
        self.first_stage_seconds = time.perf_counter() - started if extra else 0.0
        """Wall time of the first stage in this process (short when cached; 0 without one)."""
        self.loader = BatchLoader(dataset, "train", config.batch_size, seed=config.seed, devices=self.devices,
                                  normalisation=self.normalisation, limit=config.train_phantoms, extra=extra)
        self.unlabelled_loader = None
        if self.unlabelled is not None:
            self.unlabelled_loader = BatchLoader(self.unlabelled, "train", config.batch_size, seed=config.seed + 1,
                                                 devices=self.devices, normalisation=unlabelled_normalisation)
        self.replicated = NamedSharding(self.loader.sharding.mesh, PartitionSpec())
        # Host copies first: a restored parent's arrays are committed to one local device, which a
        # sharding over several processes does not accept.
        self.state = jax.device_put(jax.tree.map(np.asarray, state), self.replicated)
        self.checkpoints = Checkpoints(self.run, writer=True)
        self._saved_at = time.monotonic()  # when the checkpoints were last written (or the run began)
        self._unsaved_best = None  # a copy of the best state since then, written with the next `last`
        self.records: list[dict] = []
        self._figure_written, self._figure_epochs = -np.inf, 0  # when RUN/loss.png was drawn, from how many records
        if resume and self.main_process:
            remove_temporaries(self.run)  # what killed writes of the log and figure left
        resumed = resume and self.checkpoints.latest_step("last") is not None
        if not resumed:  # (killed before its first `last`) the run starts over, its log rewritten, and
            self.checkpoints.discard("best")  # a `best` written before that kill is another start's
        else:
            # A `best` newer than `last` (killed between their writes) was trained with the stored settings too.
            step = max(s for s in map(self.checkpoints.latest_step, ("last", "best")) if s is not None)
            if not self._stored_config.same_run_until(config, step, self.steps_per_epoch):
                self.checkpoints.close()
                raise ValueError(f"cannot resume {self.run} with other physics-loss settings: the physics term of its "
                                 f"config or of this one acted in its first {step} steps (it may change only before)")
            self.state = self.checkpoints.restore("last", self.state)
            step = int(self.state.step)
            self.records = [r for r in read_log(self.run / METRICS) if r["step"] <= step]
        if self.main_process:
            write_run_files(self.run, config, dataset, self.normalisation, dataset.image_mask, self.signal_mask,
                            inputs=not (resumed and (self.run / INPUTS).is_file()), unlabelled=self.unlabelled)

    def _unlabelled_store(self, setup, resume: bool) -> Dataset | None:
        """The open `config.unlabelled_data` store (None without one), checked against the run
        and, when resuming, against the store the run began with (by content)."""
        if self.config.unlabelled_data is None:
            return None
        unlabelled = Dataset(self.config.unlabelled_data)
        # (A resume that names another store than the run's is checked in __init__: its batches were never read.)
        if resume and (self.run / CONFIG).is_file() and self._stored_config.unlabelled_data == self.config.unlabelled_data:
            began = json.loads((self.run / CONFIG).read_text()).get("unlabelled_dataset", {}).get("sha256")
            if began != unlabelled.fingerprint:
                raise ValueError(f"cannot resume {self.run}: its unlabelled store {self.config.unlabelled_data} has other "
                                 f"content (SHA-256 {unlabelled.fingerprint[:12]}…, the run began with {str(began)[:12]}…; "
                                 "regenerated since?)")
        if self.config.model.name == "dri-unet":
            raise ValueError("unlabelled_data is not supported for dri-unet (its first stage is cached per labelled phantom)")
        theirs = unlabelled.config.measurement_setup()
        if theirs != setup or unlabelled.config.wavelengths_nm != self.dataset.config.wavelengths_nm:
            raise ValueError(f"unlabelled_data {self.config.unlabelled_data} has another measurement set-up or other "
                             f"wavelengths than {self.dataset.folder} ({theirs.to_dict()} at {unlabelled.config.wavelengths_nm} nm "
                             f"against {setup.to_dict()} at {self.dataset.config.wavelengths_nm} nm)")
        if len(unlabelled.indices("train")) < self.config.batch_size:
            raise ValueError(f"unlabelled_data {self.config.unlabelled_data} has {len(unlabelled.indices('train'))} "
                             f"training phantoms, fewer than one batch of {self.config.batch_size}")
        return unlabelled

    def _unlabelled_batches(self, step: int):
        """The unlabelled batches from their `step`-th on (counted from the step the physics term
        joined the run): their own epochs, in order, endlessly."""
        epoch, skip = divmod(step, len(self.unlabelled_loader))
        while True:
            for batch in self.unlabelled_loader.epoch(epoch):
                if skip:
                    skip -= 1
                    continue
                yield {"signals": batch["signals"], "mri": batch["mri"]}
            epoch += 1

    def _first_stage(self, state: TrainState, indices) -> np.ndarray:
        """The network's first-stage images of the phantoms `indices` this run reads (`first_stage_images`)."""
        if jax.process_count() > 1:
            raise ValueError(f"{self.config.model.name} computes its first stage in one process; train it without jax.distributed")
        dataset, config = self.dataset, self.config
        model = config.model
        key = json_sha256(dict(  # what DRI's images depend on (not the U-Net's sizes)
            dataset=dataset.fingerprint, model=[model.name, model.wavelengths, model.image_size],
            mesh=config.physics_mesh_spacing_mm, signal_mask=np.asarray(self.signal_mask).tolist(),
            x64=bool(jax.config.jax_enable_x64), version=__version__,
            normalisation={k: np.asarray(v).tolist() for k, v in self.normalisation.to_arrays().items()},
            factor_in_float32=GaussNewton().factor_in_float32,  # its DRI's solver is the default one
        ))
        prepare = lambda signals, mri: self.steps.prepare(state, signals, mri)  # noqa: E731
        return first_stage_images(self.run, dataset, indices, prepare, key, normalisation=self.normalisation,
                                  batch_size=first_stage_batch_size(), progress=self.progress)

    def _check_run_folder(self, resume: bool) -> None:
        config_path = self.run / CONFIG
        self._stored_config = self.config  # the config the folder's run was trained with so far
        if not config_path.exists():
            return
        if not resume:
            raise ValueError(f"{self.run} already holds a training run: pass resume=True (--resume) or use a new folder")
        stored = json.loads(config_path.read_text())
        previous = self._stored_config = TrainConfig.from_dict(stored["train"])
        if previous.epochs != self.config.epochs and previous.schedule == self.config.schedule == "cosine":
            raise ValueError(
                f"cannot resume {self.run} with {self.config.epochs} epochs instead of {previous.epochs}: its cosine "
                "learning-rate schedule spans the original epochs (the rate would jump mid-run); fine-tune the run "
                "with --init-from instead, or use --schedule constant"
            )
        fixed = previous.fixed_changes(self.config)  # (the physics-loss settings: checked against the step in __init__)
        if fixed:
            raise ValueError(f"cannot resume {self.run}: its config differs from this one in {', '.join(sorted(fixed))} "
                             "(only epochs may change, under the constant schedule, and the physics-loss settings while "
                             "its physics term has not acted, but the physics mesh of a network with physics inside)")
        # The dataset is identified by its content: a store regenerated at the same path is another dataset.
        fingerprint = stored["dataset"].get("sha256")
        if fingerprint is None:  # runs from before content fingerprints: the path is all there is
            if Path(stored["dataset"]["folder"]) != Path(self.dataset.folder).absolute():
                raise ValueError(f"cannot resume {self.run}: it was trained on {stored['dataset']['folder']}")
        elif fingerprint != self.dataset.fingerprint:
            raise ValueError(
                f"cannot resume {self.run}: it was trained on another dataset (content SHA-256 {fingerprint[:12]}…, "
                f"{self.dataset.folder} has {self.dataset.fingerprint[:12]}…; regenerated since?)"
            )

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.steps_per_epoch

    def fit(self, stop_after_steps: int | None = None) -> TrainState:
        """Train until all epochs are done (or `stop_after_steps` steps in total).

        Checkpoints are written at the end of an epoch (at most every `checkpoint_interval_s`),
        at the end, when stopping early and on KeyboardInterrupt; `Trainer(..., resume=True).fit()`
        then continues exactly from the last one.

        Returns:
            The final state.
        """
        from tqdm.auto import tqdm

        end = self.total_steps if stop_after_steps is None else min(self.total_steps, stop_after_steps)
        step = int(self.state.step)
        physics_from = self.config.physics_from_epoch * self.steps_per_epoch  # the step the physics term joins at
        unlabelled = None
        bar = tqdm(total=end, initial=step, unit="step", disable=not self.progress, desc=f"{self.config.model.name}")
        try:
            while step < end:
                epoch, position = divmod(step, self.steps_per_epoch)
                weight = np.float32(self.config.physics_weight_at(epoch))
                with_physics = bool(weight > 0)
                if with_physics and unlabelled is None and self.unlabelled_loader is not None:
                    unlabelled = self._unlabelled_batches(max(step - physics_from, 0))
                started, taken = time.perf_counter(), 0
                for batch in self.loader.epoch(epoch):
                    if position > 0:  # resuming inside an epoch: the order is the same, skip what was done
                        position -= 1
                        continue
                    if unlabelled is not None:
                        batch = {**batch, "unlabelled": next(unlabelled)}
                    self.state = self.steps.train(self.state, batch, weight, with_physics=with_physics)
                    step, taken = step + 1, taken + 1
                    bar.update()
                    if step == end:
                        break
                if step % self.steps_per_epoch == 0:
                    self._end_epoch(epoch, started, taken)
                    bar.set_postfix(train=f"{self.records[-1]['train_data']:.4g}", val=f"{self.records[-1].get('val_data', float('nan')):.4g}")
        except KeyboardInterrupt:
            self._save_checkpoints()
            self._write_figure()
            bar.close()
            print(f"\ninterrupted at step {int(self.state.step)}; checkpoint saved, resume with --resume")
            raise
        bar.close()
        self._save_checkpoints()
        self._write_figure()
        return self.state

    def _save_checkpoints(self) -> None:
        """Write `last` and, where validation improved since the previous write, `best`."""
        if self._unsaved_best is not None:
            self.checkpoints.save("best", self._unsaved_best)
            self._unsaved_best = None
        self.checkpoints.save("last", self.state)
        self._saved_at = time.monotonic()

    def close(self) -> None:
        """Release the checkpoint managers (their threads and files); `fit` is then refused."""
        self.checkpoints.close()

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _write_figure(self) -> None:
        """Redraw RUN/loss.png from the records (process 0; nothing to draw before an epoch ends)."""
        if self.main_process and self.records and self._figure_epochs != len(self.records):
            save_loss_figure(self.run / LOSS_FIGURE, self.records, self.config.data_loss)
            self._figure_written, self._figure_epochs = time.monotonic(), len(self.records)

    def _end_epoch(self, epoch: int, started: float, taken: int) -> None:
        """Log, validate and checkpoint; `taken` steps of the epoch ran since `started` (fewer after a resume)."""
        total, data, physics, count = (float(v) for v in jax.device_get(self.state.running))
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch,
            "step": int(self.state.step),
            "train_loss": total / count,
            "train_data": data / count,
            "train_physics": physics / count,
            "physics_weight": self.config.physics_weight_at(epoch),
            "seconds": seconds,
            "samples_per_s": taken * self.config.batch_size / seconds,
        }
        if len(self.validation):
            metrics = self.evaluate(self.validation, with_physics=self.config.physics_weight_at(epoch) > 0)
            record["val_data"] = float(metrics["data"].mean())
            record["val_physics"] = float(metrics["physics"].mean())
            for name, mse in zip(CHROMOPHORES, metrics["mse"].mean(0)):
                record[f"val_rmse_{name}"] = float(np.sqrt(mse))
            score = record["val_data"] if self.config.data_weight > 0 else record["val_physics"]
        else:
            score = record["train_loss"]
        # The best checkpoint of a run whose physics joins late is one trained with it.
        best = np.inf if epoch == self.config.physics_from_epoch > 0 else float(self.state.best)
        improved = score < best
        self.state = self.state._replace(
            running=np.zeros(self.state.running.shape, np.float32),
            best=np.asarray(min(score, best), np.float32),
        )
        self.state = jax.device_put(self.state, self.replicated)
        # The log first: a run killed between the two resumes from the previous checkpoint and
        # drops the newer record (`step` beyond it); the other order would lose this epoch's record.
        self.records.append(record)
        if self.main_process:
            write_log(self.run / METRICS, self.records)
            if epoch + 1 == self.config.epochs or time.monotonic() - self._figure_written >= FIGURE_INTERVAL_S:
                self._write_figure()
        if improved:  # a copy: the next training step donates the state's buffers
            self._unsaved_best = jax.tree.map(jnp.copy, self.state)
        due = epoch + 1 == self.config.epochs or time.monotonic() - self._saved_at >= self.checkpoint_interval_s
        if jax.process_count() > 1:  # saves are collective: every process follows process 0's clock
            due = bool(multihost_utils.broadcast_one_to_all(np.asarray(due)))
        if due:
            self._save_checkpoints()

    def evaluate(self, indices, state: TrainState | None = None, with_physics: bool = True) -> dict[str, np.ndarray]:
        """Per-phantom metrics of `state` (default the current one) on dataset phantoms
        (`with_physics=False`: the physics term is not computed, 0).

        Returns:
            {"data": (n,) normalised MSE, "physics": (n,) physics MSE (0 when off),
             "mse": (n, 3) MSE of HbO (µM²), Hb (µM²), water (%²) inside the disk}.
        """
        state = self.state if state is None else state
        if self.first_stage_rows is not None:
            missing = np.setdiff1d(indices, self.first_stage_rows).tolist()
            if missing:
                raise ValueError(f"the first stage is cached for the training and validation phantoms only, not "
                                 f"{missing[:10]}: use TrainedNetwork(run) (it runs the first stage) for others")
        return evaluate_batches(self.steps, state, self.loader, indices, self.config.batch_size, with_physics)


def evaluate_batches(steps: Steps, state, loader: BatchLoader, indices, batch_size: int,
                     with_physics: bool = True) -> dict[str, np.ndarray]:
    """`steps.evaluate` over `indices` in fixed-size batches (the last one padded, then dropped).

    Arguments:
        steps, state: the run's steps and state.
        loader: a loader of the run's dataset (its sharding; `put` reads each process's rows).
        indices: phantom indices.
        batch_size: phantoms per batch (a multiple of the device count).
        with_physics: compute the physics term (else 0).

    Returns:
        Per-phantom metrics, as `Steps.evaluate`, on every process.
    """
    indices = np.asarray(indices)
    results = []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - len(chunk))])
        out = steps.evaluate(state, loader.put(padded), with_physics=with_physics)
        out = multihost_utils.process_allgather(out, tiled=True) if loader.multi_process else jax.device_get(out)
        results.append({k: np.asarray(v)[: len(chunk)] for k, v in out.items()})
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def train(data, run, config: TrainConfig = TrainConfig(), **options) -> Trainer:
    """Train `config.model` on the dataset store `data` into the folder `run` (see `Trainer`).

    Returns:
        The finished `Trainer` (its `state`, `records`, `evaluate`, `checkpoints`); `close()` it
        when done.
    """
    stop = options.pop("stop_after_steps", None)
    trainer = Trainer(data, run, config, **options)
    trainer.fit(stop)
    return trainer
