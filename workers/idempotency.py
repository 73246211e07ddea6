"""Idempotency keys: a client that retries a create request gets the first one's resource.

A key is remembered per route (method and path) for ``idempotency_ttl_s``, in a table whose
primary key (key, route) lets concurrent requests race safely:

* a job's key is inserted in the transaction that inserts the job, so of any number of
  concurrent requests with one key exactly one creates a job and the others answer with it;
  the same key with a different body is refused;
* an upload's body is a stream, known only once read, so its key is claimed ``pending``
  before the stream is read and marked ``done``, with the form's hash, in the transaction
  that records the slide or sequence; a duplicate that finds it pending is told to retry
  (409), one that finds it done reads its own form and gets the resource if the hashes
  match, and a failed upload releases the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from workers.errors import Conflict, InvalidInput
from workers.store import Guard, Store, idempotency_keys

PENDING, DONE = "pending", "done"
ATTEMPTS = 5  # insert, find the row gone (it expired meanwhile), insert again...
IN_PROGRESS = "a request with this Idempotency-Key is in progress; retry it shortly"
T = TypeVar("T")


@dataclass(frozen=True)
class KeyedRequest:
    """A create request that carries an ``Idempotency-Key``."""

    key: str
    route: str  # method and path, e.g. "POST /v1/jobs"
    body_sha256: str | None = None  # None for uploads: their body is hashed once read


@dataclass(frozen=True)
class Earlier:
    """What an earlier request with the key created."""

    resource_id: str
    body_sha256: str | None


def reused(request: KeyedRequest) -> InvalidInput:
    """The error for a key sent again with a different body."""
    return InvalidInput(
        f"Idempotency-Key {request.key!r} was used for {request.route} with a different body: "
        "use a new key for a new request"
    )


class IdempotencyKeys:
    """The remembered keys, in the store's database."""

    def __init__(self, store: Store, ttl_s: float, pending_s: float) -> None:
        self.engine = store.engine
        self.ttl_s = ttl_s
        self.pending_s = pending_s

    def find(self, request: KeyedRequest) -> Earlier | None:
        """What the key created, or None when the key is new (or expired).

        Raises:
            InvalidInput: the key was used with a different body (one the request knows).
            Conflict: a request with the key is still in progress.

        """
        where = _row(request)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(idempotency_keys).where(where)).mappings().first()
        if row is None or self._expired(row):
            return None
        if request.body_sha256 is not None and row["body_sha256"] != request.body_sha256:
            raise reused(request)
        if row["state"] == PENDING:
            raise Conflict(IN_PROGRESS)
        return Earlier(str(row["resource_id"]), row["body_sha256"])

    def create_once(
        self, request: KeyedRequest, resource_id: str, create: Callable[[Guard], T]
    ) -> tuple[str, T | None]:
        """Create a resource unless the key has one: (the key's resource id, ``create``'s result).

        ``create`` gets a guard to run in the transaction that inserts the resource; the guard
        records the key as done, and raises (rolling the resource back) when a concurrent
        request recorded it first. The result is None when the resource is another request's.
        """
        record = self._recorder(request, resource_id, DONE)
        created: list[T] = []
        earlier = self._once(request, lambda: created.append(create(record)))
        return (resource_id, created[0]) if earlier is None else (earlier.resource_id, None)

    def claim(self, request: KeyedRequest, resource_id: str) -> Earlier | None:
        """Claim the key before a stream is read: None, or what the key created.

        Raises:
            InvalidInput: the key was used with a different body.
            Conflict: a request with the key is still in progress.

        """
        record = self._recorder(request, resource_id, PENDING)

        def insert() -> None:
            with self.engine.begin() as conn:
                record(conn)

        return self._once(request, insert)

    def completer(self, request: KeyedRequest, resource_id: str, body_sha256: str) -> Guard:
        """The guard that marks a claimed key done, with the body's hash, in the resource's insert.

        A claim that was taken over meanwhile (pending longer than ``pending_s``) stays the
        other request's: the resource is still recorded, under no key.
        """

        def complete(conn: Connection) -> None:
            conn.execute(
                idempotency_keys.update()
                .where(_row(request), idempotency_keys.c.resource_id == resource_id)
                .values(state=DONE, body_sha256=body_sha256)
            )

        return complete

    def release(self, request: KeyedRequest, resource_id: str) -> None:
        """Forget a claim whose upload failed, so a retry with the key starts afresh."""
        with self.engine.begin() as conn:
            conn.execute(
                idempotency_keys.delete().where(
                    _row(request),
                    idempotency_keys.c.resource_id == resource_id,
                    idempotency_keys.c.state == PENDING,
                )
            )

    def _once(self, request: KeyedRequest, insert: Callable[[], None]) -> Earlier | None:
        """None once ``insert()`` recorded the key, or what the key created already."""
        for _ in range(ATTEMPTS):
            self._forget_expired()
            try:
                insert()
            except IntegrityError:
                earlier = self.find(request)
                if earlier is not None:
                    return earlier
                continue
            return None
        raise Conflict(IN_PROGRESS)  # the key's row kept expiring and coming back: retry

    def _recorder(self, request: KeyedRequest, resource_id: str, state: str) -> Guard:
        values = {
            "key": request.key,
            "route": request.route,
            "body_sha256": request.body_sha256,
            "resource_id": resource_id,
            "state": state,
            "created_at": time.time(),
        }

        def record(conn: Connection) -> None:
            conn.execute(idempotency_keys.insert().values(**values))

        return record

    def _expired(self, row: Any) -> bool:
        age = time.time() - row["created_at"]
        return bool(age > self.ttl_s or (row["state"] == PENDING and age > self.pending_s))

    def _forget_expired(self) -> None:
        """Delete every key older than ``ttl_s`` and every claim pending over ``pending_s``."""
        now = time.time()
        old = idempotency_keys.c.created_at < now - self.ttl_s
        stale = (idempotency_keys.c.state == PENDING) & (
            idempotency_keys.c.created_at < now - self.pending_s
        )
        with self.engine.begin() as conn:
            conn.execute(idempotency_keys.delete().where(old | stale))


def _row(request: KeyedRequest) -> sa.ColumnElement[bool]:
    return (idempotency_keys.c.key == request.key) & (idempotency_keys.c.route == request.route)
