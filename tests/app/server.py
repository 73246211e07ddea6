"""Run the real server command (``python -m app``) or a worker as subprocesses for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.__main__ import worker_command

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server subprocess with its own data folder and settings."""

    def __init__(self, env: dict[str, str], log: Path, args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.log = log
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait_for_worker: bool = True) -> Server:
        command = [sys.executable, "-m", "app", "--port", str(self.port), *self.args]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                response = httpx.get(f"{self.url}/health", timeout=2)
                if response.status_code == 200 or (
                    not wait_for_worker and response.is_error and response.status_code == 503
                ):
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            time.sleep(0.5)
        raise RuntimeError(f"server did not become healthy: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server and its worker at once, as a power cut would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_worker(env: dict[str, str], log: Path, concurrency: int = 2) -> subprocess.Popen[bytes]:
    command = worker_command(concurrency, f"test{free_port()}@%h")
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def wait_for_job(
    client: httpx.Client,
    job_id: str,
    states: tuple[str, ...] = ("completed", "failed", "cancelled"),
    timeout_s: float = 180,
) -> dict:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} still {job['state']}")


def upload(client: httpx.Client, path: Path, name: str | None = None) -> httpx.Response:
    with path.open("rb") as handle:
        return client.post("/v1/slides", files={"file": (name or path.name, handle)})


SLOW_JOB = {"model": "blur3x3", "tile_px": 32, "skip_background": False}


def start_slow_job(client: httpx.Client, slide_id: str, model: str = "blur3x3") -> dict:
    """A job of many tiny tiles, running long enough to cancel or kill it midway."""
    body = {**SLOW_JOB, "slide_id": slide_id, "model": model}
    job = client.post("/v1/jobs", json=body).json()
    return wait_for_job(client, job["id"], states=("running",))
