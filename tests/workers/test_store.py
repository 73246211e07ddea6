import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from workers.errors import NotFound
from workers.store import Store

POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server (.ci/run starts it)."""
    name = f"restore_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not running on 127.0.0.1:5432: {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = Store(url)
    yield store
    store.dispose()


def add_job(store: Store) -> str:
    job_id = uuid.uuid4().hex
    store.add_job({"id": job_id, "slide_id": "s", "model": "m", "params": {"a": 1}})
    return job_id


def test_job_transitions_are_atomic_and_guarded(store: Store) -> None:
    job_id = add_job(store)
    assert store.get_job(job_id)["state"] == "queued"
    assert store.transition(job_id, ("queued",), "running")
    assert not store.transition(job_id, ("queued",), "running")
    assert store.transition(job_id, ("running",), "cancelled")
    assert store.job_state(job_id) == "cancelled"


def test_regions_are_counted_once_even_when_redone(store: Store) -> None:
    job_id = add_job(store)
    assert store.mark_region_done(job_id, 0, tiles=10, tiles_restored=7, seconds=1.0)
    assert not store.mark_region_done(job_id, 0, tiles=10, tiles_restored=7, seconds=1.0)
    assert store.mark_region_done(job_id, 1, tiles=5, tiles_restored=5, seconds=2.0)
    job = store.get_job(job_id)
    assert (job["regions_done"], job["tiles_done"]) == (2, 15)
    assert store.done_regions(job_id) == {0, 1}


def test_state_survives_reopening(store: Store) -> None:
    job_id = add_job(store)
    store.merge_timings(job_id, plan_s=1.5)
    again = Store(str(store.engine.url.render_as_string(hide_password=False)))
    assert again.get_job(job_id)["timings"] == {"plan_s": 1.5}
    again.dispose()


def test_missing_records_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_job("nope")
    with pytest.raises(NotFound):
        store.get_slide("nope")


def test_worker_heartbeats(store: Store) -> None:
    store.worker_heartbeat("w1", "CPUExecutionProvider")
    store.worker_heartbeat("w1", "CPUExecutionProvider")
    assert [w["hostname"] for w in store.live_workers(60)] == ["w1"]


def test_a_job_stored_before_blur_routing_reads_with_its_model_as_the_chain(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.add_job({"id": "old", "slide_id": "s", "model": "deblur-defocus", "params": {"scale": 1}})
    params = store.get_job("old")["params"]
    assert params["models"] == ["deblur-defocus"] and not params["auto"] and not params["classify"]
    assert params["scale"] == 1


def test_tiles_of_running_regions_count_once_towards_progress(tmp_path) -> None:
    from workers.store import Store

    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.add_slide(
        {
            "id": "s",
            "filename": "a.tif",
            "sha256": "0" * 64,
            "size_bytes": 1,
            "path": "p",
            "info": {},
        }
    )
    store.add_job({"id": "j", "slide_id": "s", "model": "m", "params": {"models": ["m"]}})
    store.record_tile_progress("j", 0, 3)
    store.record_tile_progress("j", 1, 5)
    store.record_tile_progress("j", 0, 7)
    job = store.get_job("j")
    assert job["tiles_done"] == 12 and job["restore_started_at"] is not None
    store.mark_region_done("j", 0, 16, 16, 1.0)  # region 0 done: its row counts, not progress
    assert store.get_job("j")["tiles_done"] == 16 + 5
    store.dispose()
