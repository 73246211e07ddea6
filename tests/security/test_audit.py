"""The audit log: append-only in the database, one event per audited act, never PHI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.app.server import Server, create_key, upload, wait_for_job
from tests.security.conftest import key_id
from tests.workers.test_store import postgres_url  # noqa: F401 - fixture
from workers import audit
from workers.store import Store

pytestmark = pytest.mark.integration
CANARY = "PATIENT-DOE-4711"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_nobody_can_change_or_remove_an_audit_event(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'jobs.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    store = Store(url)
    Store(url)  # a second process starting installs the triggers again, harmlessly
    audit.record(store, "slide.created", "s1", actor="k1", tenant="default")
    statements = ["UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"]
    if backend == "postgresql":
        statements.append("TRUNCATE audit_events")
    for statement in statements:
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert [e["actor"] for e in audit.events(store)] == ["k1"]
    store.dispose()
    print(f"{backend}: {len(statements)} of {len(statements)} changes refused")


def test_every_audited_act_is_logged_with_who_and_what_never_phi(
    secured: Server, pyramid_tiff: Path, tmp_path: Path
) -> None:
    named = tmp_path / f"{CANARY}.tif"
    named.write_bytes(pyramid_tiff.read_bytes())
    submitter = create_key(secured.env, "submit")
    with secured.client(key=submitter) as client:
        slide = upload(client, named).json()
        body = {"slide_id": slide["id"], "model": "identity", "metadata": {"a": CANARY}}
        job = client.post("/v1/jobs", json=body).json()
        done = wait_for_job(client, job["id"])
        assert done["state"] == "completed"
        assert client.get(f"/v1/jobs/{job['id']}/tiles.csv").status_code == 200
        for _ in range(3):  # a viewer's many tile requests: one event
            assert client.get(f"/v1/jobs/{job['id']}/output.dzi").status_code == 200
            tile = client.get(f"/v1/jobs/{job['id']}/output_files/0/0_0.jpeg")
            assert tile.status_code == 200
        assert client.delete(f"/v1/jobs/{job['id']}/output").status_code == 204
        assert client.get("/v1/audit").status_code == 403  # admins only
    with secured.client(key="rsk_00000000deadbeef_" + "A" * 43) as stranger:
        assert stranger.get("/v1/slides").status_code == 401
    with secured.client() as admin:
        events = admin.get("/v1/audit", params={"limit": 1000}).json()
        exported = admin.get("/v1/audit/export.jsonl")
    assert exported.status_code == 200
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert lines[-len(events) :] == events[-len(lines) :]
    mine = [(e["action"], e["object_id"]) for e in events if e["actor"] == key_id(submitter)]
    expected = [
        ("slide.created", slide["id"]),
        ("job.queued", job["id"]),
        ("output.downloaded", job["id"]),
        ("output.viewed", job["id"]),
        ("job.output_deleted", job["id"]),
    ]
    assert mine == expected, mine
    job_events = [e for e in events if e["object_id"] == job["id"]]
    by_system = [e["action"] for e in job_events if e["actor"] == "system"]
    assert by_system[:1] == ["job.running"] and "job.completed" in by_system
    failed = [e for e in events if e["action"] == "auth.failed"]
    assert failed and failed[-1]["actor"] == "00000000deadbeef"
    assert all(e["tenant"] in ("default", None) for e in events)
    assert CANARY not in exported.text
    with sqlite3.connect(Path(secured.env["RESTORE_DATA_DIR"]) / "jobs.db") as db:
        rows = db.execute("SELECT * FROM audit_events").fetchall()
    assert CANARY not in repr(rows)
    print(f"audit: {len(events)} events, the submitter's acts {len(mine)}/{len(expected)}, no PHI")
