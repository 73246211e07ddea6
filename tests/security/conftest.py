from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.server import ROOT, Server, create_key


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, test_models: Path) -> Iterator[Server]:
    """The embedded server; rates raised so that the matrix's hundreds of calls all count."""
    data = tmp_path_factory.mktemp("secured")
    env = {
        "RESTORE_DATA_DIR": str(data / "var"),
        "RESTORE_MODELS_DIRS": f'["{test_models}"]',
        "RESTORE_REGION_PX": "512",
        "RESTORE_WEBHOOK_ALLOW_PRIVATE": "true",
        "RESTORE_AUTH_FAILURES_BURST": "100000",
        "RESTORE_RATE_LIMIT_BURST": "100000",
    }
    server = Server(env, data / "server.log").start()
    yield server
    server.stop()


def keys_cli(server: Server, *args: str) -> str:
    """Run ``python -m app.keys`` on the server's database; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "app.keys", *args],
        cwd=ROOT,
        env=server.env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def key_id(key: str) -> str:
    return key.split("_")[1]


@pytest.fixture(scope="module")
def callers(secured: Server) -> dict[str, str | None]:
    """A credential per caller of the matrix (tenant ``default`` unless named ``other``)."""
    env = secured.env
    revoked = create_key(env, "admin")
    keys_cli(secured, "revoke", key_id(revoked))
    return {
        "none": None,
        "invalid": "rsk_0123456789abcdef_" + "A" * 43,
        "revoked": revoked,
        "expired": create_key(env, "admin", expires_days=1e-6),  # 0.09 s
        "read": create_key(env, "read"),
        "submit": create_key(env, "submit"),
        "admin": secured.key,
        "other": create_key(env, "admin", tenant="other"),
    }
