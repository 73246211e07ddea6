"""The audit log of the caller's tenant, for admins: as JSON pages or exported as JSON lines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from app.auth import CallerDep
from app.deps import Services, services
from app.schemas import AuditEvent
from workers import audit

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Svc = Annotated[Services, Depends(services)]


@router.get("", response_model=list[AuditEvent])
def audit_events(
    caller: CallerDep,
    svc: Svc,
    after_id: Annotated[int, Query(ge=0, description="events after this id (paging)")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Annotated[str | None, Query(max_length=32, description="e.g. job.failed")] = None,
    object_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[AuditEvent]:
    """Events of the caller's tenant (and failed authentications), oldest first."""
    found = audit.events(svc.store, after_id, limit, action, object_id, caller.tenant)
    return [AuditEvent.model_validate(event) for event in found]


@router.get("/export.jsonl", response_class=StreamingResponse)
def export_audit(caller: CallerDep, svc: Svc) -> StreamingResponse:
    """Every event of the caller's tenant (and failed authentications), one JSON per line."""
    lines: Iterator[str] = audit.json_lines(svc.store, caller.tenant)
    return StreamingResponse(lines, media_type="application/x-ndjson")
