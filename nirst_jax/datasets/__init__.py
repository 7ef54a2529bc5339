"""Datasets: simulation config, sharded generation, the on-disk store, reading and batching."""

from ._dataset import Dataset
from ._generate import ShardedGenerator, default_device_batch
from ._loader import BatchLoader
from ._normalisation import Normalisation
from ._simulation import PhantomSimulator, SimulationConfig
from ._split import SPLITS, split_labels
from ._store import simulate_dataset

__all__ = [
    "BatchLoader",
    "Dataset",
    "Normalisation",
    "PhantomSimulator",
    "SPLITS",
    "ShardedGenerator",
    "SimulationConfig",
    "default_device_batch",
    "simulate_dataset",
    "split_labels",
]
