"""API keys of the caller's tenant: create (the key is shown once), list, revoke (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from app.auth import CallerDep
from app.deps import Services, services
from app.openapi import errors
from app.schemas import KeyCreate, KeyCreated, KeyPublic
from workers.api_keys import ApiKeys

router = APIRouter(prefix="/v1/keys", tags=["keys"])
Svc = Annotated[Services, Depends(services)]


@router.post("", status_code=201, response_model=KeyCreated, responses=errors(400, 415, 422))
def create_key(body: KeyCreate, caller: CallerDep, svc: Svc) -> KeyCreated:
    """Create a key of the caller's tenant; the answer holds the key, never shown again.

    Keys of other tenants are created on the server: ``python -m app.keys create --tenant``.
    """
    keys = ApiKeys(svc.store)
    record, token = keys.create(body.name, list(body.scopes), caller.tenant, body.expires_in_days)
    return KeyCreated(**record, key=token)


@router.get("", response_model=list[KeyPublic])
def list_keys(caller: CallerDep, svc: Svc) -> list[KeyPublic]:
    """Every key of the caller's tenant, revoked and expired ones too."""
    return [KeyPublic.model_validate(k) for k in ApiKeys(svc.store).all(caller.tenant)]


@router.delete("/{key_id}", status_code=204, responses=errors(404))
def revoke_key(key_id: str, caller: CallerDep, svc: Svc) -> Response:
    """Revoke a key at once (it stays listed, with ``revoked_at``)."""
    ApiKeys(svc.store).revoke(key_id, caller.tenant)
    return Response(status_code=204)
