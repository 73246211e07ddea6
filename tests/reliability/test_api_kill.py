"""``kill -9`` of the API: nothing it started lives on (sandbox readers, embedded worker)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.app.server import Server, start_slow_job, upload
from tests.engine.test_readers import bomb_tiff
from tests.reliability.processes import alive, descendants

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SANDBOX_GONE_S = 5.0
ALL_GONE_S = 30.0  # the worker's warm shutdown finishes the region task it holds


def _upload_quietly(server: Server, path: Path) -> None:
    """Upload ``path``; the server is killed meanwhile, so any outcome will do."""
    try:
        with server.client(timeout=120) as client:
            upload(client, path)
    except httpx.HTTPError:
        pass


def _wait_until_gone(pids: set[int], within_s: float) -> dict[int, float]:
    """When each of ``pids`` was seen gone, in seconds from now (missing: still alive)."""
    started, gone = time.monotonic(), {}
    while len(gone) < len(pids) and time.monotonic() - started < within_s:
        for pid in pids - gone.keys():
            if not alive(pid):
                gone[pid] = time.monotonic() - started
        time.sleep(0.05)
    return gone


def test_nothing_the_api_started_outlives_its_kill_9(
    tmp_path: Path, test_models: Path, pyramid_tiff: Path
) -> None:
    """A sandbox child busy with a slow file, one idle, and a worker busy with a job."""
    env = {
        "RESTORE_DATA_DIR": str(tmp_path / "var"),
        "RESTORE_MODELS_DIRS": f'["{test_models}"]',
        "RESTORE_REGION_PX": "512",
        "RESTORE_SANDBOX_TIMEOUT_S": "300",
    }
    server = Server(env, tmp_path / "server.log").start()
    assert server.process is not None
    slow = bomb_tiff(tmp_path / "slow.tif", padding=5_000_000)  # minutes to thumbnail
    started: dict[int, str] = {}
    try:
        with server.client(timeout=60) as client:
            slide = upload(client, pyramid_tiff).json()
            start_slow_job(client, slide["id"])
        busy = threading.Thread(target=_upload_quietly, args=(server, slow), daemon=True)
        busy.start()
        time.sleep(2)  # the slow file is in a sandbox child now
        with server.client(timeout=60) as client:
            assert upload(client, pyramid_tiff).status_code == 201  # in the other child
        started = descendants(server.process.pid)
        sandboxes = {pid for pid, command in started.items() if "spawn_main" in command}
        workers = {pid for pid, command in started.items() if "celery" in command}
        assert len(sandboxes) == 2 and workers, started
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        gone = _wait_until_gone(set(started), ALL_GONE_S)
    finally:
        for pid in started:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    left = {pid: started[pid] for pid in set(started) - gone.keys()}
    sandbox_s = max((gone.get(pid, ALL_GONE_S) for pid in sandboxes), default=0.0)
    print(
        f"kill -9 of the API: {len(gone)}/{len(started)} processes it started gone, "
        f"sandbox readers ({len(sandboxes)}, one busy) within {sandbox_s:.1f} s, "
        f"all within {max(gone.values(), default=0.0):.1f} s"
    )
    assert not left, left
    assert sandbox_s <= SANDBOX_GONE_S
