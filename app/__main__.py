"""``python -m app``: serve the API on 127.0.0.1:8000, with an embedded Celery worker."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys

import uvicorn

from workers.settings import get_settings

PR_SET_PDEATHSIG = 1


def worker_command(concurrency: int, hostname: str = "embedded@%h") -> list[str]:
    """The command line of a Celery worker for this application."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery_app",
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        f"--hostname={hostname}",
    ]


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this child when the server process ends, however it ends."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_worker() -> subprocess.Popen[bytes]:
    """A Celery worker subprocess with the same settings (environment)."""
    command = worker_command(get_settings().worker_concurrency)
    return subprocess.Popen(command, env=os.environ.copy(), preexec_fn=_die_with_parent)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, start the worker if embedded, and run uvicorn until stopped."""
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-worker", action="store_true", help="do not start a worker")
    args = parser.parse_args(argv)
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = None if args.no_worker or not settings.embedded_worker else start_worker()
    try:
        uvicorn.run("app.main:create_app", factory=True, host=args.host, port=args.port)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()


if __name__ == "__main__":
    main()
