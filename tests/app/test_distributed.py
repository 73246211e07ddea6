"""Distributed mode: Redis broker, PostgreSQL job state, separate workers; a worker is killed."""

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from tests.app.server import Server, start_slow_job, start_worker, upload, wait_for_job
from tests.app.test_api import openslide_pixels, read_output
from tests.workers.test_store import postgres_url  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REDIS_URL = "redis://127.0.0.1:6379/7"


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
        with httpx.Client(base_url=api.url, timeout=60) as client:
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
    with httpx.Client(base_url=api.url, timeout=30) as client:
        before = client.get("/v1/jobs").json()
    assert before
    api.stop()
    api.start(wait_for_worker=False)
    with httpx.Client(base_url=api.url, timeout=30) as client:
        after = client.get("/v1/jobs").json()
    assert [j["id"] for j in after] == [j["id"] for j in before]
    assert [j["state"] for j in after] == [j["state"] for j in before]
