"""Training Z-Net / Y-Net with optax: losses (data, physics), steps, checkpoints, the loop, inference."""

from ._checkpoints import Checkpoints
from ._config import FINE_TUNING_PHYSICS_WEIGHT, SCHEDULES, TrainConfig
from ._data_loss import DATA_LOSSES, LOG_MSE_FLOOR, masked_log_mse, masked_mse
from ._distributed import initialize_distributed
from ._log import loss_figure, read_log
from ._network import TrainedNetwork
from ..learned import PhysicsLoss
from ._steps import Steps, TrainState, initial_state
from ._trainer import CHECKPOINT_INTERVAL_S, Trainer, evaluate_batches, train

__all__ = [
    "CHECKPOINT_INTERVAL_S",
    "FINE_TUNING_PHYSICS_WEIGHT",
    "Checkpoints",
    "PhysicsLoss",
    "SCHEDULES",
    "Steps",
    "TrainConfig",
    "TrainState",
    "TrainedNetwork",
    "Trainer",
    "evaluate_batches",
    "initial_state",
    "initialize_distributed",
    "loss_figure",
    "masked_mse",
    "masked_log_mse",
    "DATA_LOSSES",
    "LOG_MSE_FLOOR",
    "read_log",
    "train",
]
