"""The FastAPI application: ``create_app()`` wires settings, store, broker and sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from app.deps import Services
from app.routes import (
    docs,
    health,
    hooks,
    job_outputs,
    jobs,
    models,
    sequences,
    slides,
    viewer,
    webhooks,
)
from workers.celery_app import create_celery
from workers.errors import (
    Conflict,
    Gone,
    InvalidInput,
    ModelUnavailable,
    NotFound,
    RestoreError,
    TooLarge,
    UnsupportedFormat,
)
from workers.sandbox import Sandbox
from workers.settings import Settings, get_settings
from workers.store import Store

STATIC_DIR = Path(__file__).parent / "static"
STATUS = {
    NotFound: 404,
    Gone: 410,
    Conflict: 409,
    TooLarge: 413,
    UnsupportedFormat: 415,
    InvalidInput: 422,
    ModelUnavailable: 422,
}


def status_for(error: RestoreError) -> int:
    """HTTP status of a domain error, looked up along its class hierarchy."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


async def _domain_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RestoreError)
    return JSONResponse(
        {"code": error.code, "message": error.message}, status_code=status_for(error)
    )


async def _invalid_request(_request: Request, error: Exception) -> JSONResponse:
    """A request that does not match its schema: 422 naming each field and what is wrong."""
    assert isinstance(error, RequestValidationError)
    problems = [
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: "
        + ("unknown field" if e["type"] == "extra_forbidden" else e["msg"])
        for e in error.errors()
    ]
    detail = [{k: v for k, v in e.items() if k != "ctx"} for e in error.errors()]
    return JSONResponse(
        {"code": "invalid_request", "message": "; ".join(problems), "detail": detail},
        status_code=422,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; services open in the lifespan, nothing heavy at import."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for folder in (settings.slides_dir, settings.sequences_dir, settings.jobs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        app.state.services = Services(
            settings=settings,
            store=Store(settings.resolved_database_url),
            celery=create_celery(settings),
            sandbox=Sandbox(settings.sandbox_memory_mb, settings.sandbox_timeout_s),
        )
        yield
        app.state.services.sandbox.close()
        app.state.services.store.dispose()

    app = FastAPI(
        title="Whole-slide restoration server",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by app.routes.docs with local assets (no CDN)
        redoc_url=None,  # ReDoc loads from a CDN; Swagger UI at /docs covers it
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["Content-Length", "Content-Range"],
    )
    app.add_exception_handler(RestoreError, _domain_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for router in (
        docs.router,
        health.router,
        slides.router,
        sequences.router,
        jobs.router,
        job_outputs.router,
        models.router,
        hooks.router,
        webhooks.router,
        viewer.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
