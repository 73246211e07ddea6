"""The FastAPI application: ``create_app()`` wires settings, store, broker and sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from app import audit_trail, auth, errors, openapi
from app.deps import Services
from app.routes import (
    audit,
    docs,
    health,
    hooks,
    job_outputs,
    jobs,
    keys,
    models,
    sequences,
    slides,
    viewer,
    webhooks,
)
from app.tenancy import owned
from workers.celery_app import create_celery
from workers.sandbox import Sandbox
from workers.settings import Settings, get_settings
from workers.store import Store

STATIC_DIR = Path(__file__).parent / "static"


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
    errors.install(app)  # before CORS, so that CORS wraps its answers too
    openapi.install(app)
    app.add_middleware(audit_trail.AuditTrail)  # inside Authenticate: it knows the caller
    app.add_middleware(auth.Authenticate, settings=settings)  # inside CORS: 401s carry CORS
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["Content-Length", "Content-Range"],
    )
    for router in (docs.router, health.router, viewer.router):  # open: auth.OPEN_PATHS
        app.include_router(router)
    by_method = [Depends(auth.authorize), Depends(owned)]  # GET read, POST/DELETE submit
    for router in (
        slides.router,
        sequences.router,
        jobs.router,
        job_outputs.router,
        models.router,
        hooks.router,
        webhooks.router,
    ):
        app.include_router(router, dependencies=by_method)
    for router in (keys.router, audit.router):
        app.include_router(router, dependencies=[Depends(auth.require(auth.ADMIN)), Depends(owned)])
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
