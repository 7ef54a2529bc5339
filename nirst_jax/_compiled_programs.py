"""Long jobs release compiled programs before the kernel's memory-mapping limit.

Every compiled XLA:CPU executable holds about six memory mappings, and JAX's jit caches keep
executables for the life of the process. A process that compiles many programs (a whole
`nirst reproduce`: eight networks, their evaluations, DRI on three meshes) reaches Linux's
`vm.max_map_count` (65 530 by default), and XLA then aborts inside the next compilation
("LLVM ERROR: Unable to allocate section memory"; measured: ≈ 2 000 mappings per trained
network). Between stages, `release_compiled_programs` empties the caches once the process holds
half the limit: the next stage recompiles what it needs, in seconds.
"""

from __future__ import annotations

from pathlib import Path

import jax

MAP_COUNT_LIMIT = Path("/proc/sys/vm/max_map_count")
PROCESS_MAPS = Path("/proc/self/maps")


def memory_mappings() -> tuple[int, int] | None:
    """(mappings this process holds, the kernel's limit), or None where the system does not say (not Linux)."""
    try:
        limit = int(MAP_COUNT_LIMIT.read_text())
        with PROCESS_MAPS.open("rb") as handle:
            count = sum(1 for _ in handle)
    except (OSError, ValueError):
        return None
    return count, limit


def release_compiled_programs(fraction: float = 0.5) -> bool:
    """`jax.clear_caches()` when this process holds more than `fraction` of the mapping limit.

    Arguments:
        fraction: share of `vm.max_map_count` above which the caches are emptied.

    Returns:
        Whether they were.
    """
    held = memory_mappings()
    if held is None or held[0] <= fraction * held[1]:
        return False
    jax.clear_caches()
    return True
