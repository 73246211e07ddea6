"""The ``Idempotency-Key`` header of POST /v1/jobs, /v1/slides and /v1/sequences.

A client that retries a create request with the same key gets the first request's resource
(same id and status, with ``Idempotent-Replayed: true``), never a second one; the rules and
the table are in ``workers.idempotency``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from app.deps import Services
from app.uploads import StoredUpload, form_sha256, receive_upload
from workers.errors import Conflict, NotFound
from workers.idempotency import Earlier, IdempotencyKeys, KeyedRequest, reused
from workers.store import Guard

REPLAYED = "Idempotent-Replayed"
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[!-~]+$",
        description="any unique string (e.g. a UUID) of printable ASCII: a retry with the same "
        "key within 24 h (RESTORE_IDEMPOTENCY_TTL_S) gets the first request's resource, never "
        "a second one",
    ),
]
R = TypeVar("R")
Completer = Callable[[StoredUpload], Guard]  # the guard that marks the key done, given the form


def keys(svc: Services) -> IdempotencyKeys:
    """The remembered keys, with the configured lifetimes."""
    settings = svc.settings
    return IdempotencyKeys(svc.store, settings.idempotency_ttl_s, settings.idempotency_pending_s)


def keyed(key: str | None, route: str, body: BaseModel | None = None) -> KeyedRequest | None:
    """The request as the key table knows it (None without a key).

    A JSON body is compared by its parsed value with every default filled in, so the same
    request sent with fields reordered or defaults spelled out is the same request.
    """
    if key is None:
        return None
    digest = None
    if body is not None:
        canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True)
        digest = hashlib.sha256(canonical.encode()).hexdigest()
    return KeyedRequest(key, route, digest)


def replayed(response: Response) -> None:
    """Say that this answer repeats an earlier request's."""
    response.headers[REPLAYED] = "true"


async def upload_once(
    svc: Services,
    http: Request,
    request: KeyedRequest | None,
    resource_id: str,
    response: Response,
    receive: Callable[[Completer | None], Awaitable[R]],
    describe: Callable[[str], R],
) -> R:
    """Receive an upload as ``resource_id``, unless its key created a resource already.

    ``receive`` reads the stream and records the resource, running the guard that the
    completer makes of the received form in the recording transaction; ``describe`` answers
    with the resource an earlier request made, once this request's form proved the same.
    """
    if request is None:
        return await receive(None)
    table = keys(svc)
    earlier = await run_in_threadpool(table.claim, request, resource_id)
    if earlier is not None:
        return await _replay(svc, http, request, earlier, response, describe)
    try:
        return await receive(lambda form: table.completer(request, resource_id, form_sha256(form)))
    except BaseException:
        table.release(request, resource_id)
        raise


async def _replay(
    svc: Services,
    http: Request,
    request: KeyedRequest,
    earlier: Earlier,
    response: Response,
    describe: Callable[[str], R],
) -> R:
    """The earlier upload's resource, if this request sent the same form (read, not kept)."""
    form = await receive_upload(http, None, svc.settings.max_upload_bytes)
    if earlier.body_sha256 not in (None, form_sha256(form)):
        raise reused(request)
    try:
        described = describe(earlier.resource_id)
    except NotFound:
        raise Conflict(
            f"{earlier.resource_id}, which this Idempotency-Key created, was deleted: use a new key"
        ) from None
    replayed(response)
    return described
