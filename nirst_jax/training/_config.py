"""Everything that determines a training run besides the data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .._config_dict import config_from_dict
from ..models import ModelSpec
from ._data_loss import DATA_LOSSES

SCHEDULES = ("constant", "cosine")
PHYSICS_LOSS_SETTINGS = ("physics_weight", "physics_from_epoch", "physics_warmup_epochs", "physics_mesh_spacing_mm",
                         "unlabelled_data")
"""The settings of the physics-consistency loss: a run may resume with others while its physics
term has not yet acted (`TrainConfig.same_run_until`)."""
FINE_TUNING_PHYSICS_WEIGHT = 0.1
"""Physics weight of the best schedules measured (docs/training.md, "Which schedule"): w = 0.1 in
the last epochs of a run (`physics_from_epoch`) or when fine-tuning a trained network;
`nirst train --physics-from-epoch` and `--init-from` use it by default."""


@dataclass(frozen=True)
class TrainConfig:
    """A training run's settings (defaults: the study's).

    Attributes:
        model: the network (`ModelSpec`).
        epochs: passes over the training split.
        batch_size: phantoms per step (a multiple of the device count).
        learning_rate: Adam's step size.
        schedule: "constant" or "cosine" (decay to 0 over all steps).
        data_weight: weight of the supervised loss (0: self-supervised, physics only).
        data_loss: the supervised loss: "mse" (of the normalised images, pooled over the batch:
            the study's) or "log-mse" (the mean of each image's log MSE: the mean PSNR's
            objective; `nirst_jax.training.masked_log_mse`).
        physics_weight: weight w of the physics-consistency loss (0: off).
        physics_warmup_epochs: w ramps linearly from 0 over this many epochs (from
            `physics_from_epoch` on).
        physics_from_epoch: the physics term (and the unlabelled batches) join the run at this
            epoch (0-based); the epochs before it train on the supervised loss alone, exactly as
            the same run without physics would, and skip the physics' cost. 0: from the start.
            The best checkpoint is then the best of the epochs from this one on.
        physics_mesh_spacing_mm: mesh of the physics loss (None: the dataset's own mesh).
        active_fibres: train on data from this many evenly spaced fibres (None: all).
        fibre_dropout: probability that a training phantom loses a random subset of its
            fibres (`random_fibre_masks`), so one network serves 16, 8 or other fibre counts.
        symmetry_augmentation: each training phantom, each step, is replaced by its image
            under a random symmetry of the set-up (`nirst_jax.geometry.Symmetries`: the disk
            with evenly spaced fibres has 8), its data permuted to match; set-ups without a
            symmetry are refused.
        train_phantoms: train on only the first this many phantoms of the training split
            (None: all), e.g. where each phantom costs a reconstruction (`dri-unet`).
        validation_phantoms: validate on only the first this many of the validation split.
        seed: model initialisation and data order.
        init_from: a run folder whose best checkpoint initialises the network (parameters
            and batch statistics; the optimiser starts afresh) and whose normalisation the
            run keeps (with this dataset's reference): fine-tuning, e.g. with the physics loss
            or self-supervised on other data. None: random initialisation from `seed`.
        unlabelled_data: a dataset store of measurements without usable targets (say, from a
            finer mesh, another simulator or an instrument, with the same set-up) whose training
            split feeds the physics term, one batch beside each labelled batch, while the
            labelled batch feeds the supervised term alone (semi-supervised; docs/training.md).
            None: the physics term is taken on the labelled batch.
    """

    model: ModelSpec = ModelSpec()
    epochs: int = 200
    batch_size: int = 128
    learning_rate: float = 0.005
    schedule: str = "constant"
    data_weight: float = 1.0
    data_loss: str = "mse"
    physics_weight: float = 0.0
    physics_warmup_epochs: int = 0
    physics_from_epoch: int = 0
    physics_mesh_spacing_mm: float | None = None
    active_fibres: int | None = None
    fibre_dropout: float = 0.0
    symmetry_augmentation: bool = False
    train_phantoms: int | None = None
    validation_phantoms: int | None = None
    seed: int = 0
    init_from: str | None = None
    unlabelled_data: str | None = None

    def __post_init__(self):
        for name in ("epochs", "batch_size", "train_phantoms", "validation_phantoms"):
            value = getattr(self, name)
            if value is None and name.endswith("phantoms"):
                continue
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("data_weight", "physics_weight"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and ≥ 0, got {value!r}")
        if self.data_loss not in DATA_LOSSES:
            raise ValueError(f"data_loss must be one of {DATA_LOSSES}, got {self.data_loss!r}")
        if self.data_weight == 0 and self.physics_weight == 0:
            raise ValueError("data_weight and physics_weight are both 0: nothing to train on")
        for name in ("physics_warmup_epochs", "physics_from_epoch"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise ValueError(f"{name} must be an integer ≥ 0, got {value!r}")
        if self.physics_from_epoch > 0 and self.physics_weight == 0:
            raise ValueError(f"physics_from_epoch is {self.physics_from_epoch} but physics_weight is 0: there is no physics term to start")
        if self.physics_from_epoch >= self.epochs:
            raise ValueError(f"physics_from_epoch ({self.physics_from_epoch}) must be below epochs ({self.epochs}): "
                             "the physics term would never act")
        if self.physics_from_epoch > 0 and self.data_weight == 0:
            raise ValueError("physics_from_epoch needs a supervised term to train on before it (data_weight > 0)")
        if self.physics_mesh_spacing_mm is not None and not self.physics_mesh_spacing_mm > 0:
            raise ValueError(f"physics_mesh_spacing_mm must be positive, got {self.physics_mesh_spacing_mm!r}")
        if not (np.isfinite(self.fibre_dropout) and 0 <= self.fibre_dropout <= 1):
            raise ValueError(f"fibre_dropout must be in [0, 1], got {self.fibre_dropout!r}")
        if self.fibre_dropout > 0 and self.active_fibres is not None:
            raise ValueError("fibre_dropout draws among all fibres: train with either it or active_fibres, not both")
        if self.fibre_dropout > 0 and self.model.needs_physics:
            raise ValueError(f"fibre_dropout is not supported for {self.model.name!r}: its physics compares fixed measurements (use active_fibres)")
        if not isinstance(self.symmetry_augmentation, bool):
            raise ValueError(f"symmetry_augmentation must be True or False, got {self.symmetry_augmentation!r}")
        if self.unlabelled_data is not None and not (self.physics_weight > 0 and self.data_weight > 0):
            raise ValueError("unlabelled_data feeds the physics term beside a supervised one: it needs "
                             f"physics_weight > 0 and data_weight > 0, got {self.physics_weight!r} and {self.data_weight!r}")
        if self.active_fibres is not None and self.active_fibres < 2:
            raise ValueError(f"active_fibres must be ≥ 2, got {self.active_fibres!r}")

    def physics_weight_at(self, epoch: int) -> float:
        """The physics weight in `epoch` (0-based): 0 before `physics_from_epoch`, then the
        linear warm-up."""
        since = epoch - self.physics_from_epoch
        if since < 0:
            return 0.0
        if self.physics_warmup_epochs == 0:
            return self.physics_weight
        return self.physics_weight * min(1.0, (since + 1) / self.physics_warmup_epochs)

    def physics_acted(self, steps: int, steps_per_epoch: int) -> bool:
        """Whether the physics term took part in the first `steps` steps of the run."""
        return self.physics_weight > 0 and self.physics_from_epoch * steps_per_epoch < steps

    @property
    def free_before_physics(self) -> frozenset[str]:
        """The settings a run may change while its physics term has not acted: the physics-loss
        settings (`PHYSICS_LOSS_SETTINGS`) but the physics mesh of a network with physics inside."""
        kept = {"physics_mesh_spacing_mm"} if self.model.needs_physics else set()
        return frozenset(PHYSICS_LOSS_SETTINGS) - kept

    def changed_settings(self, other: "TrainConfig") -> set[str]:
        """The names of the settings in which `other` differs from this config."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {name for name in mine if mine[name] != theirs[name]}

    def fixed_changes(self, other: "TrainConfig") -> set[str]:
        """The settings in which `other` differs from this config that no resume may change: all
        but the number of epochs under a constant learning rate and `free_before_physics`."""
        changed = self.changed_settings(other) - ({"epochs"} if self.schedule == "constant" else set())
        return changed - self.free_before_physics

    def same_run_until(self, other: "TrainConfig", steps: int, steps_per_epoch: int) -> bool:
        """Whether `other` trains exactly as this config for the first `steps` steps: equal but
        for the number of epochs under a constant learning rate, and for the settings in
        `free_before_physics` while neither config's physics term acted."""
        physics = self.changed_settings(other) & self.free_before_physics
        acted = any(c.physics_acted(steps, steps_per_epoch) for c in (self, other))
        return not self.fixed_changes(other) and not (physics and acted)

    def replace(self, **changes) -> "TrainConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return config_from_dict(cls, data, "training config", {"model": ModelSpec.from_dict})
