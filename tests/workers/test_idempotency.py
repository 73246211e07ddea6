"""Idempotency keys in the database: one resource per key, also under concurrent requests."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from workers.errors import Conflict, InvalidInput
from workers.idempotency import IdempotencyKeys, KeyedRequest
from workers.store import Store, idempotency_keys, jobs, new_id

JOB = {"model": "identity", "params": {"models": ["identity"]}, "slide_id": "s"}
POST_JOBS = KeyedRequest("key-1", "POST /v1/jobs", "a" * 64)
POST_SLIDES = KeyedRequest("key-1", "POST /v1/slides")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'jobs.db'}")


def job_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() or 0)


def test_concurrent_creates_with_one_key_make_one_job(store: Store) -> None:
    keys = IdempotencyKeys(store, ttl_s=3600, pending_s=60)
    start = threading.Barrier(10)

    def create(_: int) -> tuple[str, bool]:
        job_id = new_id()
        start.wait()
        answer, added = keys.create_once(
            POST_JOBS, job_id, lambda guard: store.add_job({**JOB, "id": job_id}, guard)
        )
        return answer, added is not None

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(create, range(10)))
    assert len({job_id for job_id, _ in answers}) == 1
    assert sum(added for _, added in answers) == 1 and job_count(store) == 1


def test_the_same_key_with_another_body_is_refused(store: Store) -> None:
    keys = IdempotencyKeys(store, ttl_s=3600, pending_s=60)
    keys.create_once(POST_JOBS, new_id(), lambda guard: store.add_job({**JOB, "id": "j1"}, guard))
    other = KeyedRequest(POST_JOBS.key, POST_JOBS.route, "b" * 64)
    with pytest.raises(InvalidInput, match="different body"):
        keys.find(other)
    assert keys.find(KeyedRequest(POST_JOBS.key, "POST /v1/sequences", "b" * 64)) is None


def test_a_key_is_forgotten_after_its_lifetime(store: Store) -> None:
    keys = IdempotencyKeys(store, ttl_s=0.2, pending_s=60)
    first, _ = keys.create_once(
        POST_JOBS, "j1", lambda guard: store.add_job({**JOB, "id": "j1"}, guard)
    )
    assert keys.find(POST_JOBS) is not None and first == "j1"
    time.sleep(0.3)
    assert keys.find(POST_JOBS) is None
    second, added = keys.create_once(
        POST_JOBS, "j2", lambda guard: store.add_job({**JOB, "id": "j2"}, guard)
    )
    assert second == "j2" and added is not None and job_count(store) == 2


def test_an_upload_claim_is_pending_then_done_or_released(store: Store) -> None:
    keys = IdempotencyKeys(store, ttl_s=3600, pending_s=60)
    assert keys.claim(POST_SLIDES, "s1") is None
    with pytest.raises(Conflict, match="in progress"):
        keys.claim(POST_SLIDES, "s2")
    keys.release(POST_SLIDES, "s1")  # the upload failed: the key is free again
    assert keys.claim(POST_SLIDES, "s3") is None
    store.add_slide(slide_record("s3"), keys.completer(POST_SLIDES, "s3", "f" * 64))
    earlier = keys.claim(POST_SLIDES, "s4")
    assert earlier is not None and (earlier.resource_id, earlier.body_sha256) == ("s3", "f" * 64)


def test_a_claim_left_pending_by_a_stopped_server_expires(store: Store) -> None:
    keys = IdempotencyKeys(store, ttl_s=3600, pending_s=0.2)
    assert keys.claim(POST_SLIDES, "s1") is None
    time.sleep(0.3)
    assert keys.claim(POST_SLIDES, "s2") is None  # taken over
    store.add_slide(slide_record("s1"), keys.completer(POST_SLIDES, "s1", "1" * 64))
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(idempotency_keys)).mappings().one()
    assert (row["resource_id"], row["state"]) == ("s2", "pending")  # the late one changed nothing


def slide_record(slide_id: str) -> dict:
    return {
        "id": slide_id,
        "filename": "x.tif",
        "sha256": "0" * 64,
        "size_bytes": 1,
        "path": "x",
        "info": {},
    }
