"""Webhooks: register a LIMS receiver for job events, list and remove it, see its deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from app.auth import CallerDep
from app.deps import Services, services
from app.openapi import errors
from app.schemas import DeliveryPublic, WebhookCreate, WebhookPublic
from workers.webhook_store import WebhookStore
from workers.webhooks import check_url

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
Svc = Annotated[Services, Depends(services)]


@router.post("", status_code=201, response_model=WebhookPublic, responses=errors(400, 415, 422))
def register(body: WebhookCreate, caller: CallerDep, svc: Svc) -> WebhookPublic:
    """Register a receiver of the tenant's job events, POSTed to it signed with its secret."""
    check_url(body.url, svc.settings.webhook_allow_private)
    events: list[str] = list(body.events)
    record = WebhookStore(svc.store).add(body.url, body.secret, events, caller.tenant)
    return WebhookPublic.model_validate(record)


@router.get("", response_model=list[WebhookPublic])
def list_webhooks(caller: CallerDep, svc: Svc) -> list[WebhookPublic]:
    """Every receiver of the caller's tenant."""
    found = WebhookStore(svc.store).all(caller.tenant)
    return [WebhookPublic.model_validate(w) for w in found]


@router.get("/{webhook_id}", response_model=WebhookPublic, responses=errors(404))
def get_webhook(webhook_id: str, svc: Svc) -> WebhookPublic:
    """One receiver."""
    return WebhookPublic.model_validate(WebhookStore(svc.store).get(webhook_id))


@router.delete("/{webhook_id}", status_code=204, responses=errors(404))
def delete_webhook(webhook_id: str, svc: Svc) -> Response:
    """Stop sending events to a receiver (its delivery history stays)."""
    WebhookStore(svc.store).delete(webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=list[DeliveryPublic], responses=errors(404))
def deliveries(webhook_id: str, svc: Svc) -> list[DeliveryPublic]:
    """Every delivery attempt to a receiver, newest first."""
    store = WebhookStore(svc.store)
    store.get(webhook_id)
    return [DeliveryPublic.model_validate(d) for d in store.deliveries(webhook_id)]
