"""``python -m app``: serve the API on 127.0.0.1:8000, with an embedded Celery worker."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from types import FrameType

import uvicorn

from app import embedded
from app.embedded import worker_command
from app.first_key import ensure_admin_key
from workers import retention
from workers.settings import Settings, get_settings
from workers.store import Store

__all__ = ["main", "worker_command"]
STARTUP_FAILURE = 3  # uvicorn's exit status when the server could not start


class _Server(uvicorn.Server):
    """uvicorn's server, which also tells the supervisor to stop restarting on a signal."""

    def __init__(self, config: uvicorn.Config, supervisor: embedded.Supervisor | None) -> None:
        super().__init__(config)
        self.supervisor = supervisor

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Stop; Ctrl+C also reaches the worker, which must then end for good."""
        if self.supervisor is not None:
            self.supervisor.stop_restarting()
        super().handle_exit(sig, frame)


def _sweep_in_background(store: Store, settings: Settings) -> threading.Event:
    """Apply the retention now and every ``retention_sweep_s``; set the event to stop."""
    stop = threading.Event()
    args = (store, settings, stop)
    threading.Thread(
        target=retention.sweep_periodically, args=args, name="retention", daemon=True
    ).start()
    return stop


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, start the supervised worker if embedded, and run uvicorn until stopped."""
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-worker", action="store_true", help="do not start a worker")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.resolved_database_url)  # creates or upgrades the tables first
    ensure_admin_key(store, settings)
    embed = settings.embedded_worker and not args.no_worker
    supervisor = embedded.supervise(settings.resolved_worker_concurrency) if embed else None
    stop = _sweep_in_background(store, settings)
    config = uvicorn.Config("app.main:create_app", factory=True, host=args.host, port=args.port)
    server = _Server(config, supervisor)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if supervisor is not None:
            supervisor.stop()
        store.dispose()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
