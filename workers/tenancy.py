"""Whose an object is: every slide, sequence, job, webhook and API key has one tenant.

A caller sees only its own tenant's objects; another tenant's answer as if they did not exist
(404), so ids cannot be probed across tenants.
"""

from __future__ import annotations

import sqlalchemy as sa

from workers.errors import NotFound
from workers.store import Store, api_keys, jobs, sequences, slides, webhooks

OWNED = {  # path parameter -> (what it names, its table)
    "slide_id": ("slide", slides),
    "sequence_id": ("sequence", sequences),
    "job_id": ("job", jobs),
    "webhook_id": ("webhook", webhooks),
    "key_id": ("API key", api_keys),
}


def check_owner(store: Store, parameter: str, object_id: str, tenant: str) -> None:
    """NotFound unless the object that ``parameter`` names exists and belongs to ``tenant``."""
    what, table = OWNED[parameter]
    query = sa.select(table.c.tenant).where(table.c.id == object_id)
    with store.engine.connect() as conn:
        owner = conn.execute(query).scalar()
    if owner != tenant:
        raise NotFound(f"{what} {object_id} does not exist")
