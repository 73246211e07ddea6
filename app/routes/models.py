"""``GET /v1/models``: the installed models."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.deps import Services, services
from app.schemas import ModelPublic
from models.registry import discover

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=list[ModelPublic])
def list_models(svc: Annotated[Services, Depends(services)]) -> list[ModelPublic]:
    """Every model whose manifest is installed in the configured folders."""
    found = discover(svc.settings.models_dirs)
    return [ModelPublic.model_validate(m.manifest.model_dump()) for m in found.values()]
