"""API keys: hashed at rest, created, listed and revoked by the CLI and the admin endpoint."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import httpx
import pytest

from tests.app.server import Server
from tests.security.conftest import key_id, keys_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def status(server: Server, key: str | None, path: str = "/v1/jobs") -> int:
    headers = {} if key is None else {"X-API-Key": key}
    return httpx.get(f"{server.url}{path}", headers=headers, timeout=30).status_code


def test_the_secret_is_stored_only_as_its_hash(secured: Server) -> None:
    key = keys_cli(secured, "create", "--name", "hash", "--scopes", "read").splitlines()[-1]
    secret = key.split("_", 2)[2]
    data = Path(secured.env["RESTORE_DATA_DIR"])
    stored = b"".join(p.read_bytes() for p in data.glob("jobs.db*"))
    assert secret.encode() not in stored and key.encode() not in stored
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in stored
    assert status(secured, key) == 200


def test_the_cli_creates_lists_and_revokes(secured: Server) -> None:
    out = keys_cli(
        secured, "create", "--name", "lims", "--scopes", "read,submit", "--tenant", "lab2"
    )
    key = out.splitlines()[-1]
    assert key.startswith("rsk_") and "shown only now" in out
    listed = keys_cli(secured, "list")
    line = next(row for row in listed.splitlines() if row.startswith(key_id(key)))
    assert "lab2\tread,submit\tactive" in line and key.split("_", 2)[2] not in listed
    assert status(secured, key) == 200
    assert keys_cli(secured, "revoke", key_id(key)).startswith("revoked")
    assert status(secured, key) == 401
    assert "\trevoked\t" in next(
        r for r in keys_cli(secured, "list").splitlines() if key_id(key) in r
    )


def test_the_admin_endpoint_shows_a_key_once_and_revokes_it(secured: Server) -> None:
    with secured.client() as admin:
        created = admin.post("/v1/keys", json={"name": "viewer", "scopes": ["read"]})
        assert created.status_code == 201, created.text
        new = created.json()
        assert new["key"].startswith(f"rsk_{new['id']}_") and new["tenant"] == "default"
        listed = admin.get("/v1/keys").json()
        assert all("key" not in k and "secret_hash" not in k for k in listed)
        assert new["key"] not in admin.get("/v1/keys").text
        assert status(secured, new["key"]) == 200
        assert status(secured, new["key"], "/v1/keys") == 403  # read only
        other = admin.post("/v1/keys", json={"name": "x", "scopes": ["read"], "tenant": "lab9"})
        assert other.status_code == 422  # other tenants' keys: the CLI on the server
        expiring = admin.post(
            "/v1/keys", json={"name": "temp", "scopes": ["submit"], "expires_in_days": 1}
        ).json()
        assert 86300 < expiring["expires_at"] - expiring["created_at"] < 86500
        assert admin.delete(f"/v1/keys/{new['id']}").status_code == 204
    assert status(secured, new["key"]) == 401


def test_401_says_how_to_authenticate(secured: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"X-API-Key": "rsk_x"}):
        response = httpx.get(f"{secured.url}/v1/slides", headers=headers, timeout=30)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert set(response.json()) == {"code", "message"}
    bearer = {"Authorization": f"Bearer {secured.key}"}
    assert httpx.get(f"{secured.url}/v1/slides", headers=bearer, timeout=30).status_code == 200
    assert status(secured, None, "/health/live") == 200


def test_the_first_start_writes_an_admin_key_once(tmp_path: Path, test_models: Path) -> None:
    env = {"RESTORE_DATA_DIR": str(tmp_path / "var"), "RESTORE_MODELS_DIRS": f'["{test_models}"]'}
    log = tmp_path / "server.log"
    server = Server(env, log).start(wait_for_worker=False)
    try:
        path = tmp_path / "var" / "admin-api-key"
        key = path.read_text().strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert str(path) in log.read_text() and key not in log.read_text()
        assert status(server, key, "/v1/keys") == 200
    finally:
        server.stop()
    again = Server(env, log).start(wait_for_worker=False)
    try:
        assert log.read_text().count("First start") == 1 and path.read_text().strip() == key
        assert status(again, key, "/v1/keys") == 200
    finally:
        again.stop()
