"""Job events for a LIMS: recorded once, POSTed to each subscribed receiver, signed, retried.

Every event has an id that stays the same on every retry. The body is the event as JSON;
``X-Restore-Signature: sha256=<hex>`` is the HMAC-SHA256 of the exact body bytes with the
receiver's secret, so a receiver checks that it came from this server and was not altered.
A delivery succeeds on a 2xx answer; otherwise it is retried after ``webhook_backoff_s``,
doubling each time, up to ``webhook_max_attempts`` attempts, each recorded. Receivers on
loopback, private, link-local or reserved addresses are refused unless
``webhook_allow_private`` is set (checked at registration and before every attempt, since a
name can resolve elsewhere later).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from workers.errors import InvalidInput, NotFound
from workers.settings import Settings
from workers.store import Store, new_id
from workers.webhook_store import WebhookStore

WebhookEvent = Literal["job.queued", "job.started", "job.completed", "job.failed", "job.cancelled"]
SIGNATURE_HEADER = "X-Restore-Signature"


def check_url(url: str, allow_private: bool) -> None:
    """Refuse a receiver URL that is not http(s), or that resolves to a private address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("webhook url must be an http:// or https:// URL with a host")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(parts.hostname, port)}
    except OSError as error:
        raise InvalidInput(f"webhook host {parts.hostname!r} does not resolve: {error}") from error
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            raise InvalidInput(
                f"webhook host {parts.hostname!r} resolves to {ip}, a loopback, private or "
                "reserved address; set RESTORE_WEBHOOK_ALLOW_PRIVATE=true to allow it"
            )


def signature(secret: str, body: bytes) -> str:
    """The value of the signature header for a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def job_summary(job: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """What an event says about its job: state, the client's metadata, results and links."""
    base = f"{settings.public_url or ''}/v1/jobs/{job['id']}"
    params = job["params"]
    completed = job["state"] == "completed"
    metrics = job.get("metrics") or {}
    return {
        "id": job["id"],
        "state": job["state"],
        "slide_id": job["slide_id"],
        "sequence_id": job.get("sequence_id"),
        "model": "auto" if params.get("auto") else "+".join(params.get("models", [])),
        "metadata": job.get("client_metadata") or {},
        "error": job.get("error"),
        "qc": metrics.get("qc"),
        "hooks": job.get("hooks") or {},
        "url": base,
        "output_url": f"{base}/output.zarr" if completed else None,
        "report_url": f"{base}/report" if completed else None,
    }


def emit(
    store: Store, settings: Settings, job_id: str, kind: WebhookEvent
) -> list[tuple[str, str]]:
    """Record a job event; return (event id, webhook id) for each receiver to deliver to.

    A job's events go to its own tenant's receivers only.
    """
    job = store.get_job(job_id)
    receivers = [w for w in WebhookStore(store).all(job["tenant"]) if kind in w["events"]]
    if not receivers:
        return []
    event_id, now = new_id(), time.time()
    payload = {"id": event_id, "type": kind, "created_at": now, "job": job_summary(job, settings)}
    event = {"id": event_id, "type": kind, "job_id": job_id, "payload": payload, "created_at": now}
    WebhookStore(store).add_event(event)
    return [(event_id, w["id"]) for w in receivers]


def deliver(
    store: Store, settings: Settings, event_id: str, webhook_id: str, attempt: int
) -> float | None:
    """POST one event to one receiver once; seconds until the next attempt, or None."""
    receivers = WebhookStore(store)
    try:
        receiver = receivers.get(webhook_id)
    except NotFound:
        return None  # deleted since: nothing to deliver to
    event = receivers.get_event(event_id)
    body = json.dumps(event["payload"], separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(receiver["secret"], body),
        "X-Restore-Event": event["type"],
        "X-Restore-Event-Id": event_id,
        "X-Restore-Delivery-Attempt": str(attempt),
        "User-Agent": "slide-restore webhooks",
    }
    started = time.perf_counter()
    status, error = None, None
    try:
        check_url(receiver["url"], settings.webhook_allow_private)
        response = httpx.post(
            receiver["url"],
            content=body,
            headers=headers,
            timeout=settings.webhook_timeout_s,
            follow_redirects=False,
        )
        status = response.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except (httpx.HTTPError, InvalidInput) as failure:
        error = f"{type(failure).__name__}: {failure}"
    delivered = error is None
    retry = None
    if not delivered and attempt < settings.webhook_max_attempts:
        retry = settings.webhook_backoff_s * 2 ** (attempt - 1)
    receivers.add_delivery(
        {
            "webhook_id": webhook_id,
            "event_id": event_id,
            "event_type": event["type"],
            "attempt": attempt,
            "status_code": status,
            "error": error,
            "delivered": delivered,
            "next_attempt_in_s": retry,
            "duration_ms": (time.perf_counter() - started) * 1000.0,
            "at": time.time(),
        }
    )
    return retry
