"""Joining a multi-process (multi-host) training job."""

from __future__ import annotations

import jax


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Start `jax.distributed` for data-parallel training over several processes or hosts.

    Call it in every process before anything else touches JAX's devices; afterwards
    `jax.devices()` lists the devices of all processes and `Trainer` shards each global
    batch over them (each process reads its own rows; process 0 writes the run's files).
    On CPU the cross-process collectives use gloo.

    Arguments:
        coordinator_address: "host:port" of process 0 (reachable from every process).
        num_processes: how many processes take part.
        process_id: this process's rank, 0 … num_processes − 1.
    """
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
