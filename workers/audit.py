"""The audit log: who did what to which object, and when; append-only, never PHI.

One row per upload, job state change, download, deletion and authentication failure, with
who (API key id, OIDC subject, or ``system``), when and which object, never PHI (no file
names, no image descriptions, no client metadata).

Rows are only ever inserted: a trigger in the database refuses UPDATE, DELETE (and, in
PostgreSQL, TRUNCATE) on the table, so not even the server's own connection can change or
remove them. Job state changes are written by :meth:`Store.transition` and
:meth:`Store.add_job` in the transaction that makes them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from workers.store import Store, audit_events

APPEND_ONLY = "audit_events is append-only"
_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER IF NOT EXISTS audit_events_no_{verb} BEFORE {verb.upper()} ON audit_events "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
    for verb in ("update", "delete")
]
_POSTGRES_FUNCTION = (
    "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$ "
    f"BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$ LANGUAGE plpgsql"
)
_POSTGRES_TRIGGERS = {
    "audit_events_no_change": "BEFORE UPDATE OR DELETE ON audit_events FOR EACH ROW",
    "audit_events_no_truncate": "BEFORE TRUNCATE ON audit_events FOR EACH STATEMENT",
}


def make_append_only(engine: Engine) -> None:
    """Install the triggers that refuse changing or removing audit rows (idempotent)."""
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            for statement in _SQLITE_TRIGGERS:
                conn.execute(sa.text(statement))
        return
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        present = set(
            conn.execute(
                sa.text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass")
            ).scalars()
        )
        if present >= set(_POSTGRES_TRIGGERS):
            return
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7263001)"))  # one installer at a time
        conn.execute(sa.text(_POSTGRES_FUNCTION))
        for name, when in _POSTGRES_TRIGGERS.items():
            conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {name} ON audit_events"))
            conn.execute(
                sa.text(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION audit_events_append_only()")
            )


def record(
    store: Store,
    action: str,
    object_id: str | None = None,
    actor: str = "system",
    tenant: str | None = None,
    detail: str | None = None,
) -> None:
    """Append one event (``detail``: a short, PHI-free word or two, cut at 200 characters)."""
    values = {
        "at": time.time(),
        "actor": actor[:64],
        "tenant": tenant,
        "action": action,
        "object_id": object_id,
        "detail": detail[:200] if detail else None,
    }
    with store.engine.begin() as conn:
        conn.execute(audit_events.insert().values(**values))


def events(
    store: Store,
    after_id: int = 0,
    limit: int = 1000,
    action: str | None = None,
    object_id: str | None = None,
    tenant: str | None = None,
) -> list[dict[str, Any]]:
    """Events after ``after_id`` in the order they were written, optionally filtered.

    ``tenant``: that tenant's events and those of none (failed authentications).
    """
    query = sa.select(audit_events).where(audit_events.c.id > after_id)
    if action is not None:
        query = query.where(audit_events.c.action == action)
    if object_id is not None:
        query = query.where(audit_events.c.object_id == object_id)
    if tenant is not None:
        query = query.where(
            sa.or_(audit_events.c.tenant == tenant, audit_events.c.tenant.is_(None))
        )
    query = query.order_by(audit_events.c.id).limit(limit)
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def json_lines(store: Store, tenant: str | None = None, page: int = 1000) -> Iterator[str]:
    """Every event as one JSON object per line, read page by page (for export)."""
    after = 0
    while batch := events(store, after_id=after, limit=page, tenant=tenant):
        for event in batch:
            yield json.dumps(event, separators=(",", ":")) + "\n"
        after = batch[-1]["id"]
