"""``GET /v1/hooks``: the installed downstream analyses a job may run."""

from __future__ import annotations

from fastapi import APIRouter

from app.schemas import HookPublic
from workers import hooks

router = APIRouter(prefix="/v1/hooks", tags=["hooks"])


@router.get("", response_model=list[HookPublic])
def list_hooks() -> list[HookPublic]:
    """Every hook installed through the ``slide_restore.hooks`` entry-point group."""
    return [HookPublic.model_validate(h) for h in hooks.describe()]
