"""Distributed mode (Redis, PostgreSQL): workers killed, added or restarted; the broker lost."""

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.app.server import Server, start_slow_job, start_worker, upload, wait_for_job
from tests.app.test_api import openslide_pixels, read_output
from tests.reliability.redis_server import RedisServer
from tests.workers.test_store import postgres_url  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REDIS_URL = "redis://127.0.0.1:6379/7"
# read at import: the suite's autouse fixture clears RESTORE_* variables before each test
SCALE_OUT_TRIALS = int(os.environ.get("SCALE_OUT_TRIALS", "10"))
BROKER_OUTAGE_S = 3.0
RESUMED_WITHIN_S = 60.0


@pytest.fixture(scope="module")
def distributed_env(tmp_path_factory, test_models: Path, postgres_url: str) -> dict[str, str]:  # noqa: F811
    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not running on 127.0.0.1:6379: {exc}")
    data = tmp_path_factory.mktemp("distributed")
    return {
        "RESTORE_DATA_DIR": str(data / "var"),
        "RESTORE_BROKER_URL": REDIS_URL,
        "RESTORE_DATABASE_URL": postgres_url,
        "RESTORE_MODELS_DIRS": f'["{test_models}"]',
        "RESTORE_REGION_PX": "512",
        "RESTORE_EMBEDDED_WORKER": "false",
        "RESTORE_LOG_DIR": str(data),
    }


@pytest.fixture(scope="module")
def api(distributed_env: dict[str, str]) -> Iterator[Server]:
    log = Path(distributed_env["RESTORE_LOG_DIR"]) / "api.log"
    server = Server(distributed_env, log).start(wait_for_worker=False)
    yield server
    server.stop()


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_job_survives_a_killed_worker_process(api: Server, distributed_env, pyramid_tiff) -> None:
    log = Path(distributed_env["RESTORE_LOG_DIR"]) / f"worker-{uuid.uuid4().hex[:6]}.log"
    worker = start_worker(distributed_env, log, concurrency=2)
    try:
        with api.client(timeout=60) as client:
            deadline = time.time() + 60
            while client.get("/health").status_code != 200:
                assert time.time() < deadline, log.read_text()[-2000:]
                time.sleep(0.5)
            slide = upload(client, pyramid_tiff).json()
            job = start_slow_job(client, slide["id"], model="identity")
            while (progress := client.get(f"/v1/jobs/{job['id']}").json()["progress"])[
                "regions_done"
            ] < 1:
                time.sleep(0.05)
            # two or more regions remain, so both pool processes hold a region task now
            assert progress["regions_done"] <= progress["regions_total"] - 2
            victims = children(worker.pid)
            assert victims, "the worker has no pool processes"
            for pid in victims:
                os.kill(pid, signal.SIGKILL)  # lose whatever region tasks were in flight
            done = wait_for_job(client, job["id"], timeout_s=240)
            assert done["state"] == "completed", done["error"]
            progress = done["progress"]
            assert progress["regions_done"] == progress["regions_total"] > 1
            assert progress["tiles_done"] == progress["tiles_total"]
            assert np.array_equal(read_output(api, done)[0], openslide_pixels(pyramid_tiff))
            assert "WorkerLostError" in log.read_text()  # a task really was lost, then redone
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_jobs_survive_an_api_restart(api: Server, distributed_env) -> None:
    with api.client(timeout=30) as client:
        before = client.get("/v1/jobs").json()
    assert before
    api.stop()
    api.start(wait_for_worker=False)
    with api.client(timeout=30) as client:
        after = client.get("/v1/jobs").json()
    assert [j["id"] for j in after] == [j["id"] for j in before]
    assert [j["state"] for j in after] == [j["state"] for j in before]


def test_adding_or_restarting_workers_never_fails_or_doubles_a_job(
    api: Server, distributed_env, pyramid_tiff
) -> None:
    """Scale-out: a worker added or restarted mid-job leaves the running job to its owner."""
    trials = SCALE_OUT_TRIALS
    logs = Path(distributed_env["RESTORE_LOG_DIR"])
    workers = [start_worker(distributed_env, logs / "first-worker.log", concurrency=2)]
    reference = openslide_pixels(pyramid_tiff)
    outcomes = []
    try:
        with api.client(timeout=60) as client:
            deadline = time.time() + 60
            while client.get("/health").status_code != 200:
                assert time.time() < deadline
                time.sleep(0.5)
            slide = upload(client, pyramid_tiff).json()
            for trial in range(trials):
                job = start_slow_job(client, slide["id"], model="identity")
                while client.get(f"/v1/jobs/{job['id']}").json()["progress"]["tiles_done"] < 1:
                    time.sleep(0.05)
                if trial % 2 and len(workers) > 1:  # restart the added worker
                    workers[-1].terminate()
                    workers[-1].wait(timeout=30)
                    workers.pop()
                log = logs / f"added-{trial}.log"
                workers.append(start_worker(distributed_env, log, concurrency=2))
                done = wait_for_job(client, job["id"], timeout_s=240)
                same = done["state"] == "completed" and np.array_equal(
                    read_output(api, done)[0], reference
                )
                outcomes.append((done["state"], same, done["error"]))
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(timeout=30)
    completed = sum(state == "completed" for state, _, _ in outcomes)
    identical = sum(same for _, same, _ in outcomes)
    print(
        f"workers added or restarted mid-job: {completed}/{trials} completed, {identical} identical"
    )
    assert completed == identical == trials, outcomes


def test_a_job_whose_tasks_the_broker_lost_is_resumed(
    distributed_env, pyramid_tiff, tmp_path: Path
) -> None:
    """Redis is killed mid-job and comes back empty: a worker's reconciler requeues the rest."""
    broker = RedisServer(tmp_path).start()
    env = {
        **distributed_env,
        "RESTORE_BROKER_URL": broker.url,
        "RESTORE_JOB_LEASE_S": "5",
        "RESTORE_RECONCILE_INTERVAL_S": "5",
    }
    server = Server(env, tmp_path / "api.log").start(wait_for_worker=False)
    worker = start_worker(env, tmp_path / "worker.log", 1)
    try:
        with server.client(timeout=60) as client:
            deadline = time.time() + 60
            while client.get("/health").status_code != 200:
                assert time.time() < deadline
                time.sleep(0.5)
            slide = upload(client, pyramid_tiff).json()
            job = start_slow_job(client, slide["id"], model="identity")
            while client.get(f"/v1/jobs/{job['id']}").json()["progress"]["tiles_done"] < 1:
                time.sleep(0.05)
            broker.kill()  # every queued task is gone
            time.sleep(BROKER_OUTAGE_S)
            broker.start()
            returned_at = time.time()
            assert redis.Redis.from_url(broker.url).dbsize() == 0  # it came back empty
            done = wait_for_job(client, job["id"], timeout_s=180)
            after_s = time.time() - returned_at
            print(f"broker data lost: the job completed {after_s:.1f} s after the broker's return")
            assert done["state"] == "completed", done["error"]
            assert after_s <= RESUMED_WITHIN_S
            assert done["progress"]["regions_done"] == done["progress"]["regions_total"]
            assert np.array_equal(read_output(server, done)[0], openslide_pixels(pyramid_tiff))
        assert f"resuming running job {job['id']}" in (tmp_path / "worker.log").read_text()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        server.stop()
        broker.stop()
