"""Per-process memory limits: a decoder that asks for too much gets MemoryError, not the host.

The sandbox that opens untrusted uploads limits its whole address space. Workers limit only
their data (heap and private anonymous memory): GPU runtimes reserve far more address space
than they use, and those reservations must not count.
"""

from __future__ import annotations

import resource

MIB = 2**20


def limit_address_space(memory_mb: int) -> None:
    """Cap this process's virtual address space at ``memory_mb`` (0: no limit)."""
    _limit(resource.RLIMIT_AS, memory_mb)


def limit_data(memory_mb: int) -> None:
    """Cap this process's heap and private writable memory at ``memory_mb`` (0: no limit)."""
    _limit(resource.RLIMIT_DATA, memory_mb)


def _limit(which: int, memory_mb: int) -> None:
    if memory_mb <= 0:
        return
    _, hard = resource.getrlimit(which)
    limit = memory_mb * MIB
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(which, (limit, limit))
