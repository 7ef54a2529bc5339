"""Device-ready, sharded, shuffled batches from a dataset store."""

from __future__ import annotations

from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh as DeviceMesh
from jax.sharding import NamedSharding, PartitionSpec

from .._random import seed_key
from ._dataset import Dataset

BATCH_FIELDS = ("signals", "mri", "targets")


def device_memory_budget(device) -> int:
    """Bytes a loader may hold on `device`: half its memory limit (4 GiB when unknown, e.g. CPU)."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    limit = (stats or {}).get("bytes_limit")
    return int(limit // 2) if limit else 4 << 30


class BatchLoader:
    """Iterates batches of one split: signals (B, L, S, K) normalised ln A, MRI (B, H, W),
    targets (B, 3, H, W) HbO (µM), Hb (µM), water (%), and the phantom `index` (B,).

    Batches are sharded along the batch axis over `devices` (B must be a multiple of their
    number). The order is a permutation per epoch drawn from (`seed`, epoch), so iteration is
    reproducible and resumable at any epoch.

    Several processes (`jax.distributed`, `devices` spanning them): every process draws the
    same order, reads only the rows of each global batch that its own devices hold, and the
    global batch is assembled with `jax.make_array_from_process_local_data`.

    Arguments:
        dataset: the store.
        split: "train", "validation" or "test".
        batch_size: phantoms per batch.
        seed: shuffling seed.
        shuffle: shuffle each epoch (else in index order).
        drop_last: drop the final incomplete batch (else it is returned smaller; it must then
            still divide by the device count).
        devices: devices to shard over (default all).
        on_device: hold the whole split on the devices ("auto": when it fits in half the
            device memory and there is one process); otherwise batches are read from the
            memory-mapped shards.
        normalisation: how signals are normalised (default the store's own).
        limit: use only the first `limit` phantoms of the split (None: all).
        extra: more per-phantom inputs, name → array indexed by phantom index (rows of
            every phantom of the store, e.g. a memory-mapped first stage); batches hold
            their rows under that name.
    """

    def __init__(
        self,
        dataset: Dataset,
        split: str = "train",
        batch_size: int = 128,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        devices: Sequence[jax.Device] | None = None,
        on_device: bool | str = "auto",
        normalisation=None,
        limit: int | None = None,
        extra: dict[str, np.ndarray] | None = None,
    ):
        devices = list(jax.devices() if devices is None else devices)
        if batch_size < 1 or batch_size % len(devices):
            raise ValueError(f"batch_size {batch_size} must be a positive multiple of the {len(devices)} devices")
        self.dataset = dataset
        self.normalisation = normalisation
        self.indices = dataset.indices(split)[:limit]
        self.extra = dict(extra or {})
        for name, array in self.extra.items():
            if name in BATCH_FIELDS or name == "index" or len(array) != dataset.count:
                raise ValueError(f"extra input {name!r} must be a new name with a row per phantom ({dataset.count}), got {len(array)}")
        if len(self.indices) < batch_size and drop_last:
            raise ValueError(f"split {split!r} has {len(self.indices)} phantoms, fewer than one batch of {batch_size}")
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        mesh = DeviceMesh(np.array(devices), ("data",))
        self.sharding = NamedSharding(mesh, PartitionSpec("data"))
        self._replicated = NamedSharding(mesh, PartitionSpec())
        self.multi_process = not self.sharding.is_fully_addressable
        if self.multi_process and on_device is True:
            raise ValueError("on_device=True needs the devices of one process; several processes read their rows from the store")
        if self.multi_process:
            on_device = False
        if on_device == "auto":
            per_phantom = sum(v.nbytes for k, v in self._host_batch(self.indices[:1]).items() if k != "index")
            on_device = per_phantom * len(self.indices) <= min(device_memory_budget(d) for d in devices)
        self.on_device = bool(on_device)
        self._resident = None
        if self.on_device:
            host = self._host_batch(self.indices)
            self._resident = {k: jax.device_put(v, self._replicated) for k, v in host.items()}
            self._take = jax.jit(
                lambda arrays, rows: jax.tree.map(lambda a: jnp.take(a, rows, axis=0), arrays),
                out_shardings=self.sharding,
            )

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _host_batch(self, indices) -> dict[str, np.ndarray]:
        return {
            "signals": self.dataset.signals(indices, self.normalisation),
            "mri": self.dataset.read("mri", indices),
            "targets": self.dataset.read("targets", indices),
            "index": np.asarray(indices, np.int32),
            **{name: np.asarray(array[np.asarray(indices)]) for name, array in self.extra.items()},
        }

    def local_rows(self, size: int) -> slice:
        """The rows of a global batch of `size` that this process's devices hold (one block)."""
        spans = sorted(
            (span.start or 0, size if span.stop is None else span.stop)
            for span, *_ in self.sharding.addressable_devices_indices_map((size,)).values()
        )
        if not spans:
            raise ValueError("this process holds none of the training devices: give every process at least one")
        if any(a[1] != b[0] for a, b in zip(spans, spans[1:])):
            raise ValueError(f"this process's devices hold rows {spans} of each batch, not one block: order the devices by process")
        return slice(spans[0][0], spans[-1][1])

    def put(self, indices) -> dict[str, jax.Array]:
        """The global batch of phantoms `indices` (the same on every process), sharded.

        Each process reads only its own rows (`local_rows`).
        """
        indices = np.asarray(indices)
        if not self.multi_process:
            return jax.device_put(self._host_batch(indices), self.sharding)
        local = self._host_batch(indices[self.local_rows(len(indices))])
        return {
            name: jax.make_array_from_process_local_data(self.sharding, value, (len(indices), *value.shape[1:]))
            for name, value in local.items()
        }

    def order(self, epoch: int) -> np.ndarray:
        """Positions into the split's indices for `epoch` (a permutation when shuffling)."""
        n = len(self.indices)
        if not self.shuffle:
            return np.arange(n)
        key = jax.random.fold_in(seed_key(self.seed, "shuffle"), epoch)
        return np.asarray(jax.random.permutation(key, n))

    def epoch(self, epoch: int = 0) -> Iterator[dict[str, jax.Array]]:
        """Yield the batches of `epoch`."""
        order = self.order(epoch)
        for b in range(len(self)):
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.on_device:
                yield self._take(self._resident, jax.device_put(jnp.asarray(rows, jnp.int32), self._replicated))
            else:
                yield self.put(self.indices[rows])

    def __iter__(self):
        return self.epoch(0)
