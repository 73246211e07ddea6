from __future__ import annotations

import pytest

from workers import worker_pool
from workers.settings import Settings


@pytest.mark.parametrize(
    ("cores", "memory_mb", "processes", "threads"),
    [
        (2, 24_000, 2, 1),  # this CI machine: one single-threaded process per core
        (16, 128_000, 16, 1),
        (16, 8_000, 3, 5),  # memory for 3 processes: the cores shared among them
        (4, 1_000, 1, 4),  # too little memory for two
        (8, 0, 8, 1),  # memory unknown: by cores
    ],
)
def test_the_pool_is_fitted_to_the_host(
    cores: int, memory_mb: int, processes: int, threads: int
) -> None:
    concurrency = worker_pool.default_concurrency(cores, memory_mb)
    assert (concurrency, worker_pool.default_threads(cores, concurrency)) == (processes, threads)


def test_settings_resolve_the_pool_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_pool, "usable_cores", lambda: 4)
    monkeypatch.setattr(worker_pool, "host_memory_mb", lambda: 64_000)
    assert (Settings().resolved_worker_concurrency, Settings().resolved_ort_threads) == (4, 1)
    assert Settings(worker_concurrency=2).resolved_ort_threads == 2
    assert Settings(worker_concurrency=1, ort_threads=3).resolved_ort_threads == 3
