"""``GET /health``: the API, the broker and at least one worker; ``/health/live``: the API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from app import embedded
from app.deps import Services, services

router = APIRouter(tags=["health"])
WORKER_SEEN_WITHIN_S = 15.0  # three heartbeats (workers.tasks.HEARTBEAT_S)


def _broker_ok(svc: Services) -> bool:
    try:
        with svc.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


def _worker_problem(workers: list[dict[str, Any]]) -> str | None:
    """Why no worker can take jobs now, or None.

    With an embedded worker the supervisor in this process knows at once when it died; a new
    one counts once its heartbeat is newer than its start. Otherwise only heartbeats tell.
    """
    supervisor = embedded.current()
    if supervisor is not None:
        state = supervisor.state()
        if not state.running:
            return state.reason
        if not any(w["last_seen"] >= (state.started_at or 0.0) for w in workers):
            return "the embedded worker is starting"
    if not workers:
        return f"no worker has sent a heartbeat in the last {WORKER_SEEN_WITHIN_S:.0f} s"
    return None


@router.get(
    "/health",
    responses={503: {"description": "degraded: the reason says why (same body as 200)"}},
)
def health(svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    """200 when the broker answers and a worker is up, else 503 with the reason."""
    broker = _broker_ok(svc)
    workers = svc.store.live_workers(WORKER_SEEN_WITHIN_S)
    reason = None if broker else "the broker does not answer"
    reason = reason or _worker_problem(workers)
    body: dict[str, Any] = {
        "status": "degraded" if reason else "ok",
        "reason": reason,
        "api": True,
        "broker": broker,
        "workers": [{"hostname": w["hostname"], "provider": w["provider"]} for w in workers],
    }
    return JSONResponse(body, status_code=503 if reason else 200)


@router.get("/health/live")
def live(svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    """200 while this API process serves and reaches its database (no worker needed).

    The API container's health check: compose starts and scales workers apart from it.
    """
    svc.store.live_workers(0.0)  # a cheap query: raises while the database is unreachable
    return JSONResponse({"status": "ok", "api": True})
