"""The embedded worker dies: /health says so at once, it is restarted, and no job is lost."""

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app import embedded
from tests.app.server import Server, start_slow_job, upload, wait_for_job


def child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_supervisor_restarts_an_exiting_child_with_a_growing_back_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embedded, "POLL_S", 0.01)
    monkeypatch.setattr(embedded, "FIRST_BACKOFF_S", 0.05)
    started: list[float] = []

    def start() -> subprocess.Popen[bytes]:
        started.append(time.monotonic())
        return child("raise SystemExit(3)")

    supervisor = embedded.Supervisor(start).start()
    reasons, deadline = set(), time.monotonic() + 30
    while len(started) < 4:
        assert time.monotonic() < deadline, f"only {len(started)} starts"
        reasons.add(supervisor.state().reason)
        time.sleep(0.005)
    supervisor.stop()
    assert "the embedded worker exited (code 3); restarting" in reasons
    assert supervisor.state().restarts >= 2
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2


def test_supervisor_stops_its_running_child_and_does_not_restart_it() -> None:
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        processes.append(child("import time; time.sleep(60)"))
        return processes[-1]

    supervisor = embedded.Supervisor(start).start()
    deadline = time.monotonic() + 30
    while not supervisor.state().running:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    supervisor.stop_restarting()
    supervisor.stop()
    assert len(processes) == 1 and processes[0].returncode == -signal.SIGTERM
    assert not supervisor.state().running


def celery_children(pid: int) -> list[int]:
    """The Celery worker processes started by the server (by any of its threads)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return [c for c in children if b"celery" in Path(f"/proc/{c}/cmdline").read_bytes()]


def wait_for_health(client: httpx.Client, status: int, within_s: float) -> dict:
    deadline = time.time() + within_s
    while time.time() < deadline:
        response = client.get("/health")
        if response.status_code == status:
            return response.json()
        time.sleep(0.2)
    raise AssertionError(
        f"/health still {response.status_code} after {within_s} s: {response.text}"
    )


@pytest.mark.integration
@pytest.mark.slow
def test_a_killed_worker_is_reported_restarted_and_loses_no_job(
    tmp_path: Path, test_models: Path, pyramid_tiff: Path
) -> None:
    env = {
        "RESTORE_DATA_DIR": str(tmp_path / "var"),
        "RESTORE_MODELS_DIRS": f'["{test_models}"]',
        "RESTORE_REGION_PX": "512",
    }
    log = tmp_path / "server.log"
    server = Server(env, log).start()
    try:
        assert server.process is not None
        with server.client(timeout=60) as client:
            slide = upload(client, pyramid_tiff).json()
            running = start_slow_job(client, slide["id"])
            [worker] = celery_children(server.process.pid)
            os.kill(worker, signal.SIGKILL)
            killed_at = time.time()
            queued = client.post("/v1/jobs", json={"slide_id": slide["id"], "model": "identity"})
            assert queued.status_code == 202, queued.text

            down = wait_for_health(client, 503, within_s=5)
            assert down["status"] == "degraded"
            assert "the embedded worker exited (code -9)" in down["reason"]
            wait_for_health(client, 200, within_s=30)
            assert time.time() - killed_at < 35
            [restarted] = celery_children(server.process.pid)
            assert restarted != worker

            for job_id in (running["id"], queued.json()["id"]):
                done = wait_for_job(client, job_id, timeout_s=300)
                assert done["state"] == "completed", done["error"]
                assert done["progress"]["tiles_done"] == done["progress"]["tiles_total"]
        assert "exited (code -9); restarting in 1 s (restart 1)" in log.read_text()
    finally:
        server.stop()
