"""The web page: recent jobs and a start form; per job, input and output side by side."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter(tags=["viewer"])
INDEX = Path(__file__).resolve().parent.parent / "static" / "index.html"


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The viewer (``/?job=ID``) or, without a job, the recent jobs and a form to start one."""
    return FileResponse(INDEX, media_type="text/html")
