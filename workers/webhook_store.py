"""Webhooks, the job events they receive, and every delivery attempt, in the job database."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from workers.errors import NotFound
from workers.store import (
    DEFAULT_TENANT,
    Store,
    new_id,
    webhook_deliveries,
    webhook_events,
    webhooks,
)


class WebhookStore:
    """The webhook tables of a :class:`Store`'s database."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    def add(
        self, url: str, secret: str, events: list[str], tenant: str = DEFAULT_TENANT
    ) -> dict[str, Any]:
        """Register a receiver of ``tenant``'s job events; returns its record."""
        record = {
            "id": new_id(),
            "url": url,
            "secret": secret,
            "events": events,
            "created_at": time.time(),
            "tenant": tenant,
        }
        with self.engine.begin() as conn:
            conn.execute(webhooks.insert().values(**record))
        return record

    def get(self, webhook_id: str) -> dict[str, Any]:
        """One receiver, or NotFound."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(webhooks).where(webhooks.c.id == webhook_id)).first()
        if row is None:
            raise NotFound(f"webhook {webhook_id} not found")
        return dict(row._mapping)

    def all(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every receiver (of ``tenant``, when given), oldest first."""
        query = sa.select(webhooks).order_by(webhooks.c.created_at)
        if tenant is not None:
            query = query.where(webhooks.c.tenant == tenant)
        with self.engine.connect() as conn:
            rows = conn.execute(query)
            return [dict(r._mapping) for r in rows]

    def delete(self, webhook_id: str) -> None:
        """Remove a receiver (its delivery history stays)."""
        self.get(webhook_id)
        with self.engine.begin() as conn:
            conn.execute(webhooks.delete().where(webhooks.c.id == webhook_id))

    def add_event(self, event: dict[str, Any]) -> None:
        """Record a job event (``id``, ``type``, ``job_id``, ``payload``, ``created_at``)."""
        with self.engine.begin() as conn:
            conn.execute(webhook_events.insert().values(**event))

    def get_event(self, event_id: str) -> dict[str, Any]:
        """One recorded event."""
        query = sa.select(webhook_events).where(webhook_events.c.id == event_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"event {event_id} not found")
        return dict(row._mapping)

    def add_delivery(self, attempt: dict[str, Any]) -> None:
        """Record one delivery attempt."""
        with self.engine.begin() as conn:
            conn.execute(webhook_deliveries.insert().values(**attempt))

    def deliveries(self, webhook_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """A receiver's delivery attempts, newest first."""
        query = (
            sa.select(webhook_deliveries)
            .where(webhook_deliveries.c.webhook_id == webhook_id)
            .order_by(webhook_deliveries.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
