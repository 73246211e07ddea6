"""How many worker processes a host runs, and how many ONNX Runtime threads each uses.

Several single-threaded processes beat one process with several threads: the reads,
writes and measures between model calls run on one core, and with one process per core
another process's model runs meanwhile (2 processes x 1 thread beat 1 x 2 threads by 12 %
on an idle 2-core host and by 2x on a loaded one). So by default a host runs one worker
process per usable core, as far as its memory allows, and splits the cores among them.
"""

from __future__ import annotations

import os

PROCESS_MEMORY_MB = 1536  # a worker process's peak on the hungriest shipped model, with room
MEMORY_SHARE = 0.75  # of the host's memory, for worker processes (the rest: API, OS, cache)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def host_memory_mb() -> int:
    """The host's physical memory in MiB (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return 0


def default_concurrency(cores: int, memory_mb: int) -> int:
    """One process per core, at most as many as ``MEMORY_SHARE`` of the memory holds."""
    if memory_mb <= 0:
        return cores
    return max(1, min(cores, int(memory_mb * MEMORY_SHARE) // PROCESS_MEMORY_MB))


def default_threads(cores: int, concurrency: int) -> int:
    """The cores split evenly among the processes, at least one thread each."""
    return max(1, cores // concurrency)
