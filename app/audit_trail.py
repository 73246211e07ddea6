"""What the API writes to the audit log: uploads, deletions, downloads of outputs, keys.

An ASGI middleware, inside :class:`app.auth.Authenticate` (so it knows the caller): after a
request to one of ``ACTIONS``' routes has been answered with success, it appends one event
with the caller's key id and tenant and the object's id (from the path, or for a creation
from the answer's ``id``). Viewing an output (Deep Zoom tiles, OME-Zarr chunks: hundreds
of requests a minute) is written once per caller and job per ``VIEW_EVERY_S``. Jobs'
creation and state changes are written by the store itself (:mod:`workers.audit`), and
failed authentication by :class:`app.auth.Authenticate`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import Caller
from workers import audit

VIEW_EVERY_S = 600.0
ACTIONS: dict[tuple[str, str], str] = {
    ("POST", "/v1/slides"): "slide.created",
    ("DELETE", "/v1/slides/{slide_id}"): "slide.deleted",
    ("POST", "/v1/sequences"): "sequence.created",
    ("DELETE", "/v1/sequences/{sequence_id}"): "sequence.deleted",
    ("DELETE", "/v1/jobs/{job_id}/output"): "job.output_deleted",
    ("GET", "/v1/jobs/{job_id}/output.ome.tiff"): "output.downloaded",
    ("GET", "/v1/jobs/{job_id}/tiles.csv"): "output.downloaded",
    ("GET", "/v1/jobs/{job_id}/tiles.parquet"): "output.downloaded",
    ("GET", "/v1/jobs/{job_id}/frames.csv"): "output.downloaded",
    ("GET", "/v1/jobs/{job_id}/report"): "output.downloaded",
    ("GET", "/v1/jobs/{job_id}/hooks/{name}/centroids.geojson"): "output.downloaded",
    ("GET", "/v1/jobs/{job_id}/output.zarr/{file_path:path}"): "output.viewed",
    ("GET", "/v1/jobs/{job_id}/output_files/{level}/{col}_{row}.jpeg"): "output.viewed",
    ("GET", "/v1/jobs/{job_id}/frames/{t}/output_files/{level}/{col}_{row}.jpeg"): (
        "output.viewed"
    ),
    ("POST", "/v1/webhooks"): "webhook.created",
    ("DELETE", "/v1/webhooks/{webhook_id}"): "webhook.deleted",
    ("POST", "/v1/keys"): "key.created",
    ("DELETE", "/v1/keys/{key_id}"): "key.revoked",
}
_ID_PARAMS = ("job_id", "slide_id", "sequence_id", "webhook_id", "key_id")


class AuditTrail:
    """Appends an audit event for each successful request to an audited route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.viewed: dict[tuple[str, str], float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; once answered with success, record it if it is audited."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answer: dict[str, Any] = {"status": 0, "body": b""}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body" and answer["status"] in (201, 202):
                answer["body"] += message.get("body", b"")  # a creation's small JSON answer
            await send(message)

        await self.app(scope, receive, watch)
        event = self._event(scope, answer["status"], answer["body"])
        if event is not None:
            store = scope["app"].state.services.store
            await run_in_threadpool(audit.record, store, **event)

    def _event(self, scope: Scope, status: int, body: bytes) -> dict[str, Any] | None:
        """The event a finished request makes, or None."""
        route = scope.get("route")
        caller = scope.get("state", {}).get("caller")
        if route is None or not isinstance(caller, Caller) or not 200 <= status < 300:
            return None
        action = ACTIONS.get((scope["method"], getattr(route, "path", "")))
        if action is None:
            return None
        params = scope.get("path_params", {})
        object_id = next((params[p] for p in _ID_PARAMS if p in params), None)
        if object_id is None:
            object_id = _created_id(body)
        if action == "output.viewed" and not self._first_view(caller.key_id, str(object_id)):
            return None
        detail = route.path if action.startswith("output") else None  # which output
        return {
            "action": action,
            "object_id": object_id,
            "actor": caller.key_id,
            "tenant": caller.tenant,
            "detail": detail,
        }

    def _first_view(self, actor: str, job_id: str) -> bool:
        """Whether this caller's view of this job is the first in ``VIEW_EVERY_S``."""
        now = time.monotonic()
        last = self.viewed.get((actor, job_id))
        if last is not None and now - last < VIEW_EVERY_S:
            return False
        if len(self.viewed) > 10_000:  # forget old views rather than grow without bound
            self.viewed = {k: t for k, t in self.viewed.items() if now - t < VIEW_EVERY_S}
        self.viewed[(actor, job_id)] = now
        return True


def _created_id(body: bytes) -> str | None:
    """The ``id`` of a creation's JSON answer."""
    try:
        found = json.loads(body).get("id")
    except (ValueError, AttributeError):
        return None
    return str(found) if found is not None else None
