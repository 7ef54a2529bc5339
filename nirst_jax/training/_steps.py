"""Jit-compiled train and evaluation steps on a functional (params, batch stats, optimiser) state."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from .._random import seed_key
from ..datasets import Normalisation
from ..geometry import Symmetries
from ..models import mask_signals, normalise_mri, random_fibre_masks
from ._data_loss import data_loss
from ..learned import PhysicsLoss


def _part_key(key, part: int):
    """`key` for the labelled part of a batch (0: unchanged, so runs without an unlabelled part
    keep their draws), a key of its own for part 1."""
    return key if part == 0 else jax.random.fold_in(key, part)


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree; checkpointed whole).

    Attributes:
        params: network parameters (`nnx.Param` state).
        batch_stats: BN running statistics (`nnx.BatchStat` state).
        opt_state: optax state.
        step: steps taken (int32 scalar).
        running: (4,) float32 sums over the current epoch: total, data, physics loss, steps.
        best: validation loss of the best checkpoint so far (inf before the first).
    """

    params: Any
    batch_stats: Any
    opt_state: Any
    step: jax.Array
    running: jax.Array
    best: jax.Array


def initial_state(model: nnx.Module, optimiser: optax.GradientTransformation) -> tuple[nnx.GraphDef, TrainState]:
    """Split `model` into its graph and a fresh `TrainState`."""
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    state = TrainState(
        params=params,
        batch_stats=batch_stats,
        opt_state=optimiser.init(params),
        step=jnp.zeros((), jnp.int32),
        running=jnp.zeros(4, jnp.float32),
        best=jnp.asarray(jnp.inf, jnp.float32),
    )
    return graphdef, state


class Steps:
    """The train and evaluation steps of one run.

    Arguments:
        graphdef: the network's graph (from `initial_state`).
        optimiser: the optax transformation.
        normalisation: target normalisation (signals arrive normalised).
        image_mask: (H, W) pixels inside the disk (losses and MRI normalisation).
        signal_mask: (S, K) measurements the network sees (absent fibres zeroed), or None.
        physics: the physics-consistency loss, or None (its term is then 0).
        unlabelled_physics: the physics loss of an unlabelled store's measurements (their mesh
            and reference): with it, a training batch's `unlabelled` part (signals, MRI) feeds
            the physics term and the labelled part the supervised term alone.
        data_weight: weight of the supervised loss.
        loss: the supervised loss, a name of `DATA_LOSSES` ("mse" or "log-mse").
        fibre_dropout: probability that a training phantom loses random fibres (0: off).
        symmetries: the set-up's `Symmetries`; each training phantom is transformed by a
            random one each step (None: no augmentation).
        seed: seed of the fibre-dropout and symmetry draws (one key per step, from `step`).
    """

    def __init__(
        self,
        graphdef: nnx.GraphDef,
        optimiser: optax.GradientTransformation,
        normalisation: Normalisation,
        image_mask,
        signal_mask=None,
        physics: PhysicsLoss | None = None,
        unlabelled_physics: PhysicsLoss | None = None,
        data_weight: float = 1.0,
        loss: str = "mse",
        fibre_dropout: float = 0.0,
        symmetries: Symmetries | None = None,
        seed: int = 0,
    ):
        self.graphdef = graphdef
        self.optimiser = optimiser
        self.normalisation = normalisation
        self.image_mask = jnp.asarray(image_mask)
        self.signal_mask = None if signal_mask is None else jnp.asarray(signal_mask)
        self.physics = physics
        self.unlabelled_physics = unlabelled_physics
        self.data_weight = data_weight
        self.data_loss = data_loss(loss)
        self.fibre_dropout = fibre_dropout
        self.dropout_key = seed_key(seed, "fibre-dropout")  # its own stream, not the model's
        self.symmetries = symmetries
        self.symmetry_key = seed_key(seed, "symmetry")
        self.train = jax.jit(self._train, donate_argnums=0, static_argnames="with_physics")
        """(state, batch, physics_weight, with_physics=True) → the next state. `with_physics=False`
        leaves the physics term out (0) and costs nothing of it: the epochs before
        `TrainConfig.physics_from_epoch`, the same program as a run without physics."""
        self.evaluate = jax.jit(self._evaluate, static_argnames="with_physics")
        self.prepare = self._prepare
        """(state, signals, MRI) → the first stage's images of a network with one (`prepare`).
        Not jitted as a whole: DRI's Gauss-Newton program inside is compiled on its own
        (`reconstruct_batch`), and so shared with a DRI `GaussNewtonMethod` of the same set-up
        and batch (≈ 20 s of compilation fewer in the `small` study)."""

    def _inputs(self, signals, mri):
        """What the network sees: signals of the absent fibres zeroed, the MRI normalised."""
        if self.signal_mask is not None:
            signals = mask_signals(signals, self.signal_mask)
        return signals, normalise_mri(mri, self.image_mask)

    def predict(self, params, batch_stats, signals, mri, train: bool = False, prepared=None):
        """Normalised network output (B, 3, H, W) and the updated BN statistics.

        `prepared`: the first stage's images of a network with one (`prepare`), when cached."""
        model = nnx.merge(self.graphdef, params, batch_stats, copy=True)  # fresh Variables in this trace
        options = {} if prepared is None else {"prepared": prepared}
        output = model(*self._inputs(signals, mri), train=train, **options)
        return output, nnx.state(model, nnx.BatchStat)

    def _prepare(self, state: TrainState, signals, mri):
        model = nnx.merge(self.graphdef, state.params, state.batch_stats, copy=True)
        return model.prepare(*self._inputs(signals, mri))

    def _physics(self, output, signals, with_physics: bool = True):
        if self.physics is None or not with_physics:
            return jnp.zeros((), output.dtype)
        return self.physics(output, signals)

    def _dropped(self, signals, step, part: int = 0):
        """Signals with each phantom's randomly dropped fibres zeroed (fibre dropout); `part` 1
        draws for the unlabelled part of the batch."""
        if self.fibre_dropout == 0:
            return signals
        key = _part_key(jax.random.fold_in(self.dropout_key, step), part)
        masks = random_fibre_masks(key, signals.shape[0], signals.shape[-2], self.fibre_dropout)
        return mask_signals(signals, masks[:, None])  # (B, 1, S, K): one mask per phantom

    def _transformed(self, batch: dict, step, part: int = 0) -> dict:
        """The batch with each phantom replaced by its image under a random symmetry (`part`: as
        in `_dropped`)."""
        if self.symmetries is None:
            return batch
        key = _part_key(jax.random.fold_in(self.symmetry_key, step), part)
        which = jax.random.randint(key, (batch["signals"].shape[0],), 0, len(self.symmetries))
        images = {name: self.symmetries.images(batch[name], which) for name in ("mri", "targets", "prepared") if name in batch}
        return {**batch, **images, "signals": self.symmetries.signals(batch["signals"], which)}

    def _train(self, state: TrainState, batch: dict, physics_weight, with_physics: bool = True):
        batch = self._transformed(batch, state.step)
        inputs, mri = self._dropped(batch["signals"], state.step), batch["mri"]
        unlabelled = batch.get("unlabelled")
        if unlabelled is not None and (self.unlabelled_physics is None or "prepared" in batch or not with_physics):
            raise ValueError("a batch with an unlabelled part needs Steps(unlabelled_physics=...), no first stage and the physics term")
        if unlabelled is not None:  # one forward pass: batch-norm statistics over both parts
            unlabelled = self._transformed({"signals": unlabelled["signals"], "mri": unlabelled["mri"]}, state.step, part=1)
            inputs = jnp.concatenate([inputs, self._dropped(unlabelled["signals"], state.step, part=1)])
            mri = jnp.concatenate([mri, unlabelled["mri"]])
        labelled = batch["signals"].shape[0]

        def objective(params):
            output, batch_stats = self.predict(params, state.batch_stats, inputs, mri, train=True,
                                               prepared=batch.get("prepared"))
            if self.data_weight == 0:  # self-supervised: targets may be absent (NaN) and are never read
                data = jnp.zeros((), output.dtype)
            else:
                data = self.data_loss(output[:labelled], self.normalisation.targets(batch["targets"]), self.image_mask)
            if unlabelled is None:
                physics = self._physics(output, batch["signals"], with_physics)
            else:
                physics = self.unlabelled_physics(output[labelled:], unlabelled["signals"])
            return self.data_weight * data + physics_weight * physics, (data, physics, batch_stats)

        (total, (data, physics, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = self.optimiser.update(grads, state.opt_state, state.params)
        losses = jnp.stack([total, data, physics, 1.0]).astype(jnp.float32)
        return state._replace(
            params=optax.apply_updates(state.params, updates),
            batch_stats=batch_stats,
            opt_state=opt_state,
            step=state.step + 1,
            running=state.running + losses,
        )

    def _evaluate(self, state: TrainState, batch: dict, with_physics: bool = True):
        """Per-phantom metrics: data loss (normalised), physics MSE (0 without `with_physics`),
        and (B, 3) MSE in µM², µM², %²."""
        output, _ = self.predict(state.params, state.batch_stats, batch["signals"], batch["mri"],
                                 prepared=batch.get("prepared"))
        targets = self.normalisation.targets(batch["targets"])
        per_sample = jax.vmap(lambda p, t: self.data_loss(p[None], t[None], self.image_mask))(output, targets)
        physics = jax.vmap(lambda p, s: self._physics(p[None], s[None], with_physics))(output, batch["signals"])
        mask = self.image_mask.astype(output.dtype)
        error = jnp.square(self.normalisation.images(output) - batch["targets"]) * mask
        physical = jnp.sum(error, (-2, -1)) / jnp.sum(mask)
        return {"data": per_sample, "physics": physics, "mse": physical}
