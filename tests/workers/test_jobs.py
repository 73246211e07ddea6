"""Job orchestration without Celery: start, regions, finish, redelivery and duplicates."""

import time
from pathlib import Path

import numpy as np
import pytest

from models.registry import get_model
from workers import jobs
from workers.engine import omezarr
from workers.engine.geometry import Box
from workers.engine.readers import open_slide
from workers.layout import job_paths
from workers.planning import plan_params
from workers.sandbox import inspect_upload
from workers.settings import Settings
from workers.store import Store


@pytest.fixture
def setup(tmp_path: Path, test_models: Path, pyramid_tiff: Path):
    settings = Settings(data_dir=tmp_path, models_dirs=[test_models], region_px=512)
    store = Store(settings.resolved_database_url)
    (tmp_path / "slide").mkdir()
    inspected = inspect_upload(str(pyramid_tiff), str(tmp_path / "slide"), (2**32, 10**8), 10**9)
    store.add_slide(
        {
            "id": "s1",
            "filename": "synthetic.tif",
            "sha256": "0" * 64,
            "size_bytes": 1,
            "path": inspected["path"],
            "info": inspected["info"],
        }
    )
    manifest = get_model([test_models], "identity").manifest
    params = plan_params((1500, 1200), [manifest], settings, skip_background=False)
    store.add_job({"id": "j1", "slide_id": "s1", "model": "identity", "params": params})
    yield settings, store
    store.dispose()


def test_regions_run_once_and_a_redelivered_finish_carries_on(setup, pyramid_tiff) -> None:
    settings, store = setup
    step = jobs.start(store, settings, "j1")
    assert step == jobs.NextStep("restore", list(range(9)), claimed=True)
    assert not jobs.start(store, settings, "j1").claimed  # a second start claims nothing
    todo = step.todo
    last = [jobs.run_region(store, settings, "j1", i) for i in todo]
    assert last[-1] and not any(last[:-1])
    assert jobs.run_region(store, settings, "j1", 0)  # redelivered: counted once, still done
    assert store.get_job("j1")["regions_done"] == 9
    # the worker of task-a died after claiming the finish; its message is redelivered
    claim = {"finalizer": "task-a", "finalizer_at": time.time()}
    assert store.transition("j1", ("running",), "finalizing", **claim)
    assert not jobs.finish(store, settings, "j1", "task-b")  # a duplicate backs off
    assert jobs.finish(store, settings, "j1", "task-a")
    assert store.get_job("j1")["state"] == "completed"
    out = omezarr.read_box(job_paths(settings, "j1").output, Box(0, 0, 1500, 1200))
    expected = open_slide(pyramid_tiff).read_region((0, 0), 0, (1500, 1200))
    assert np.array_equal(out, expected)


def test_cancelled_job_stops_and_drops_its_partial_output(setup) -> None:
    settings, store = setup
    jobs.start(store, settings, "j1")
    assert job_paths(settings, "j1").partial.exists()
    assert store.transition("j1", ("running",), "cancelled")
    assert not jobs.run_region(store, settings, "j1", 0)
    assert not job_paths(settings, "j1").partial.exists()
    assert jobs.unfinished_jobs(store) == []


def test_finish_claims_the_job_once(setup) -> None:
    settings, store = setup
    for index in jobs.start(store, settings, "j1").todo:
        jobs.run_region(store, settings, "j1", index)
    assert jobs.ready_to_finish(store, "j1")
    assert jobs.finish(store, settings, "j1", "task-a")
    assert not jobs.finish(store, settings, "j1", "task-b")
    job = store.get_job("j1")
    assert job["state"] == "completed" and job["finalizer"] == "task-a"
    assert {"plan_s", "finalize_s", "regions_s"} <= set(job["timings"])


def _run_region_then_die(settings: Settings, job_id: str) -> None:
    """A worker that dies in the middle of a region (as one killed for its memory would)."""
    import os

    store = Store(settings.resolved_database_url)
    store.record_tile_progress = lambda *_: os._exit(137)  # type: ignore[method-assign]
    jobs.run_region(store, settings, job_id, 0)
    os._exit(0)


def test_a_region_that_keeps_killing_its_worker_fails_its_job_after_three_attempts(
    setup, test_models: Path
) -> None:
    import multiprocessing

    from workers.errors import GaveUp

    settings, store = setup
    manifest = get_model([test_models], "blur3x3").manifest
    params = plan_params((1500, 1200), [manifest], settings, tile_px=32, skip_background=False)
    store.add_job({"id": "j2", "slide_id": "s1", "model": "blur3x3", "params": params})
    jobs.start(store, settings, "j2")
    context = multiprocessing.get_context("spawn")
    for _ in range(settings.max_task_attempts):  # redelivered after each death
        child = context.Process(target=_run_region_then_die, args=(settings, "j2"))
        child.start()
        child.join(60)
        assert child.exitcode == 137
    assert 0 not in store.done_regions("j2")
    with pytest.raises(GaveUp, match="region 0 stopped its worker 3 times"):
        jobs.run_region(store, settings, "j2", 0)
    assert jobs.run_region(store, settings, "j2", 1) is False  # other regions still run
    assert 1 in store.done_regions("j2")
