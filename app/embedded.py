"""The embedded Celery worker of ``python -m app``: started, watched, and restarted if it dies.

A supervisor thread owns the worker subprocess. It polls the child, and when the child exits
it records why and starts a new one after a back-off (1 s, doubling to 60 s; back to 1 s once a
worker has stayed up for a minute). ``GET /health`` runs in the same process and reads
:func:`current` to report a dead or starting worker at once, without waiting for its heartbeat
to go stale. Nothing accepted is lost meanwhile: the broker keeps the queued messages, and the
new worker requeues unfinished jobs when it starts (``RESTORE_RESUME_JOBS_ON_WORKER_START``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from workers.engine.read_errors import without_paths
from workers.settings import get_settings

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
POLL_S = 0.5
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
STABLE_S = 60.0
STOP_TIMEOUT_S = 30.0
WORKER_LOCK_WAIT_S = 120.0  # the longest an earlier worker may take to finish its task
_current: Supervisor | None = None


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


def start_worker(concurrency: int) -> subprocess.Popen[bytes]:
    """A Celery worker subprocess with the same settings (environment).

    Linux sends it SIGTERM when the thread that started it ends, however the server ends.
    """
    # resolved here: the child runs only the prctl call between fork and exec (threads)
    prctl = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).prctl

    def die_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    command = worker_command(concurrency)
    lock = _worker_lock()
    return subprocess.Popen(
        command, env=os.environ.copy(), preexec_fn=die_with_parent, pass_fds=(lock,)
    )


_held: list[IO[str]] = []  # this server's handle on the lock, opened once


def _worker_lock() -> int:
    """The descriptor of the data folder's worker lock, taken once no earlier worker holds it.

    The worker and its pool processes inherit the descriptor, so the lock stays held until
    the last of them exits. After a ``kill -9`` of the server its worker finishes the task it
    holds (SIGTERM, warm shutdown); the next server's worker, which resumes the jobs of its
    host name at start, must not start meanwhile, or the two would run one job at once.
    """
    if not _held:
        handle = (get_settings().data_dir / "embedded-worker.lock").open("a+")
        deadline = time.monotonic() + WORKER_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    log.warning("an earlier worker still holds %s; starting anyway", handle.name)
                    break
                time.sleep(0.2)
        _held.append(handle)
    return _held[0].fileno()


@dataclass(frozen=True)
class WorkerState:
    """What the supervisor knows about its worker, for ``GET /health``."""

    running: bool
    started_at: float | None = None
    """When the current worker process started (its heartbeat must be newer)."""
    restarts: int = 0
    reason: str | None = None
    """Why no worker is running, while ``running`` is false."""


class Supervisor:
    """Runs ``start()``'s child, restarts it with a back-off whenever it exits."""

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        self._start = start
        self._stop = threading.Event()
        self._no_restart = threading.Event()
        self._lock = threading.Lock()
        self._state = WorkerState(running=False, reason="the embedded worker is not started yet")
        # the thread that starts a child must outlive it: the child's PDEATHSIG is tied to it
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)

    def start(self) -> Supervisor:
        """Start the first worker and watch it from a thread."""
        self._thread.start()
        return self

    def state(self) -> WorkerState:
        """The worker's state now."""
        with self._lock:
            return self._state

    def stop_restarting(self) -> None:
        """Let the worker end without a restart (Ctrl+C in a terminal reaches it too)."""
        self._no_restart.set()

    def stop(self) -> None:
        """Stop restarting, and stop the running worker (SIGTERM, then SIGKILL after 30 s)."""
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_S + 5)

    def _set(self, state: WorkerState) -> None:
        with self._lock:
            self._state = state

    def _run(self) -> None:
        backoff_s, restarts = FIRST_BACKOFF_S, 0
        while not self._stop.is_set():
            started_at = time.time()
            reason = self._run_one(started_at, restarts)
            if reason is None or self._no_restart.is_set():
                stopping = "the server is stopping"
                self._set(WorkerState(running=False, restarts=restarts, reason=stopping))
                return
            if time.time() - started_at >= STABLE_S:
                backoff_s = FIRST_BACKOFF_S
            log.warning("%s in %.0f s (restart %d)", reason, backoff_s, restarts + 1)
            self._set(WorkerState(running=False, restarts=restarts, reason=reason))
            if self._stop.wait(backoff_s):
                return
            backoff_s, restarts = min(backoff_s * 2, MAX_BACKOFF_S), restarts + 1

    def _run_one(self, started_at: float, restarts: int) -> str | None:
        """Start a worker and wait for it to end: why it ended, or None once stopping."""
        try:
            child = self._start()
        except Exception as error:  # e.g. out of memory or processes: retry after a back-off
            log.exception("the embedded worker could not start")
            return f"the embedded worker could not start ({without_paths(str(error))}); restarting"
        log.info("embedded worker started (pid %d)", child.pid)
        self._set(WorkerState(running=True, started_at=started_at, restarts=restarts))
        while not self._stop.wait(POLL_S):
            code = child.poll()
            if code is not None:
                return f"the embedded worker exited (code {code}); restarting"
        _terminate(child)
        return None


def _terminate(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a warm shutdown: Celery finishes or requeues its tasks), SIGKILL if it hangs."""
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def supervise(concurrency: int) -> Supervisor:
    """Start the embedded worker under a supervisor that :func:`current` returns."""
    global _current
    _current = Supervisor(lambda: start_worker(concurrency)).start()
    return _current


def current() -> Supervisor | None:
    """The supervisor of this process, or None when it runs no embedded worker (distributed)."""
    return _current
