"""The dependency that answers 404 for a path naming another tenant's object."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.auth import CallerDep
from app.deps import Services, services
from workers.tenancy import OWNED, check_owner


def owned(request: Request, caller: CallerDep, svc: Annotated[Services, Depends(services)]) -> None:
    """Check every id in the path (slide, sequence, job, webhook, key) against the tenant."""
    for parameter, value in request.path_params.items():
        if parameter in OWNED:
            check_owner(svc.store, parameter, value, caller.tenant)
