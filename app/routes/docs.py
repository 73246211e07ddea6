"""``/docs``: the interactive API documentation, served entirely from this server.

FastAPI's default page loads Swagger UI from a CDN, which a hospital network without
internet access cannot reach; Swagger UI 5 (it reads OpenAPI 3.1, which FastAPI writes) is
vendored with its licence in ``app/static/swagger`` and served under ``/static/swagger``.
The online validator badge, which would call out, is switched off.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

ASSETS_URL = "/static/swagger"

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def docs() -> HTMLResponse:
    """Swagger UI for ``/openapi.json``, with every asset local."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Whole-slide restoration server: API",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},
    )
