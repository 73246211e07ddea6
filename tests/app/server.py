"""Run the real server command (``python -m app``) or a worker as subprocesses for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec
import httpx
from ome_zarr.io import parse_url
from ome_zarr.reader import Node, Reader

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
        self.key = ""

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
                    self.key = self.key or self.admin_key()
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            time.sleep(0.5)
        raise RuntimeError(f"server did not become healthy: {self.log.read_text()[-3000:]}")

    def admin_key(self) -> str:
        """The key the first start wrote, or (the database had keys) a new admin key."""
        written = Path(self.env.get("RESTORE_DATA_DIR", "var")) / "admin-api-key"
        if written.is_file():
            return written.read_text().strip()
        return create_key(self.env, "admin")

    @property
    def headers(self) -> dict[str, str]:
        """What a request needs to be let in with the admin key."""
        return {"X-API-Key": self.key}

    def client(self, timeout: float = 60, key: str | None = None) -> httpx.Client:
        """An HTTP client of this server that sends the admin key (or ``key``)."""
        headers = {"X-API-Key": self.key if key is None else key}
        return httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

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


@contextmanager
def fsspec_http_headers(headers: dict[str, str]) -> Iterator[None]:
    """Every fsspec HTTP file system made meanwhile sends ``headers`` (ome-zarr opens URLs so)."""
    before = {p: fsspec.config.conf.get(p) for p in ("http", "https")}
    for protocol in before:
        fsspec.config.conf[protocol] = {"headers": headers}
    try:
        yield
    finally:
        for protocol, conf in before.items():
            if conf is None:
                fsspec.config.conf.pop(protocol, None)
            else:
                fsspec.config.conf[protocol] = conf


def zarr_nodes(server: Server, url_path: str) -> list[Node]:
    """The nodes of the OME-Zarr at ``url_path``, read by URL with ome-zarr-py (as napari)."""
    with fsspec_http_headers(server.headers):
        return list(Reader(parse_url(server.url + url_path))())


def create_key(
    env: dict[str, str], scopes: str, tenant: str = "default", expires_days: float | None = None
) -> str:
    """A new API key, made with the CLI on the database that ``env`` names."""
    command = [sys.executable, "-m", "app.keys", "create", "--name", "test", "--scopes", scopes]
    command += ["--tenant", tenant]
    if expires_days is not None:
        command += ["--expires-days", str(expires_days)]
    done = subprocess.run(
        command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


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
