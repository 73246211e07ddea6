from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.server import Server


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, test_models: Path) -> Iterator[Server]:
    """The server as a user starts it: embedded worker, filesystem broker, SQLite."""
    data = tmp_path_factory.mktemp("embedded")
    env = {
        "RESTORE_DATA_DIR": str(data / "var"),
        "RESTORE_MODELS_DIRS": f'["{test_models}"]',
        "RESTORE_REGION_PX": "512",
        "RESTORE_CORS_ORIGINS": '["http://viewer.lan"]',
        "RESTORE_INPUT_DELETION": "keep",  # the viewer test shows an output whose slide is gone
        # Schemathesis sends hundreds of requests a second, valid and invalid keys included
        "RESTORE_RATE_LIMIT_BURST": "100000",
        "RESTORE_AUTH_FAILURES_BURST": "100000",
    }
    server = Server(env, data / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
def client(embedded: Server) -> Iterator[httpx.Client]:
    with embedded.client() as client:
        yield client
