"""``GET /health``: the API, the broker and at least one worker."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from app.deps import Services, services

router = APIRouter(tags=["health"])
WORKER_SEEN_WITHIN_S = 30.0


def _broker_ok(svc: Services) -> bool:
    try:
        with svc.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:
        return False


@router.get("/health")
def health(svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    """200 when the broker answers and a worker has been seen recently, else 503."""
    broker = _broker_ok(svc)
    workers = svc.store.live_workers(WORKER_SEEN_WITHIN_S)
    body: dict[str, Any] = {
        "status": "ok" if broker and workers else "degraded",
        "api": True,
        "broker": broker,
        "workers": [{"hostname": w["hostname"], "provider": w["provider"]} for w in workers],
    }
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)
