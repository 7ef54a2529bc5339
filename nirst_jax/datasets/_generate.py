"""Batched, jit-compiled phantom generation sharded over devices with `jax.shard_map`.

Phantom i is simulated from `fold_in(seed_key(seed, "dataset-phantom"), i)`, and every device always runs the same
program on `device_batch` phantoms, so the dataset is bit-identical whatever the number of
devices (or processes) that generate it.
"""

from __future__ import annotations

from typing import Callable, Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh as DeviceMesh
from jax.sharding import NamedSharding, PartitionSpec

from .._build_cache import BuildCache
from .._random import seed_key
from ._simulation import PhantomSimulator


_PROGRAMS: BuildCache[Callable] = BuildCache(4)


def _program(simulator: PhantomSimulator, device_mesh: DeviceMesh, cache_key: Hashable | None) -> Callable:
    """The jitted, sharded step (indices, root key) → phantoms.

    Generators built with the same `cache_key` (which must determine the simulator: its config
    and mesh) share one program, so a second store of the same set-up in a process does not
    compile again (compilation is most of a small store's time).
    """
    key = None if cache_key is None else (cache_key, tuple(device_mesh.devices.flat))

    def build():
        def local(indices, root):
            return jax.vmap(lambda i: simulator(jax.random.fold_in(root, i)))(indices)

        spec = PartitionSpec("data")
        return jax.jit(jax.shard_map(local, mesh=device_mesh, in_specs=(spec, PartitionSpec()), out_specs=spec,
                                     check_vma=False))

    return _PROGRAMS.get(key, build)


def default_device_batch() -> int:
    """Phantoms per device per step: 8 on CPU (fastest of 2–16 on 736- and 2850-node meshes,
    docs/benchmarks.md), 64 on accelerators."""
    return 8 if jax.default_backend() == "cpu" else 64


class ShardedGenerator:
    """Simulates phantoms by global index on all given devices.

    Arguments:
        simulator: the per-phantom simulator.
        seed: dataset seed.
        devices: devices to use (default: this process's local devices).
        device_batch: phantoms per device per step (default `default_device_batch()`).
        cache_key: a hashable that determines `simulator` (e.g. its config and mesh hash): generators
            with the same key reuse one compiled program; None compiles a new one.
    """

    def __init__(
        self,
        simulator: PhantomSimulator,
        seed: int,
        devices: Sequence[jax.Device] | None = None,
        device_batch: int | None = None,
        cache_key: Hashable | None = None,
    ):
        devices = list(jax.local_devices() if devices is None else devices)
        self.device_batch = default_device_batch() if device_batch is None else int(device_batch)
        if self.device_batch < 1:
            raise ValueError(f"device_batch must be ≥ 1, got {device_batch!r}")
        self.mesh = DeviceMesh(np.array(devices), ("data",))
        self.sharding = NamedSharding(self.mesh, PartitionSpec("data"))
        self.root = seed_key(seed, "dataset-phantom")
        self._step = _program(simulator, self.mesh, cache_key)

    @property
    def global_batch(self) -> int:
        """Phantoms per step over all devices."""
        return self.device_batch * self.mesh.size

    def __call__(self, indices) -> dict[str, np.ndarray]:
        """Simulate the phantoms with the given global indices.

        Arguments:
            indices: (P,) non-negative phantom indices.

        Returns:
            Dict of NumPy arrays with leading axis P (see `PhantomSimulator.__call__`).
        """
        indices = np.asarray(indices, np.int64)
        if indices.ndim != 1 or (indices < 0).any() or (indices >= 2**31).any():
            raise ValueError("indices must be a 1-D array of integers in [0, 2³¹)")
        count = len(indices)
        padded = -(-count // self.global_batch) * self.global_batch
        # Padding repeats the last index: extra phantoms are computed and dropped.
        indices = np.concatenate([indices, np.full(padded - count, indices[-1] if count else 0)])
        chunks = []
        for start in range(0, padded, self.global_batch):
            batch = jax.device_put(jnp.asarray(indices[start : start + self.global_batch], jnp.uint32), self.sharding)
            chunks.append(jax.tree.map(np.asarray, self._step(batch, self.root)))
        return {name: np.concatenate([c[name] for c in chunks])[:count] for name in chunks[0]}
