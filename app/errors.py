"""Every error answer is ``{code, message}`` JSON: domain errors, invalid requests, HTTP errors.

Domain errors map to a status along their class hierarchy; FastAPI's and Starlette's own
errors (a body that is not JSON, an unknown path, a method the path does not take) get the
same body; a path with control characters (``%00``) is refused before any route sees it; an
unexpected exception answers 500 without its text, which the server log keeps.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from workers.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    ModelUnavailable,
    NotFound,
    RateLimited,
    RestoreError,
    TooLarge,
    Unauthenticated,
    UnsupportedFormat,
)

STATUS = {
    Unauthenticated: 401,
    Forbidden: 403,
    RateLimited: 429,
    NotFound: 404,
    Gone: 410,
    Conflict: 409,
    TooLarge: 413,
    UnsupportedFormat: 415,
    InvalidInput: 422,
    ModelUnavailable: 422,
}
HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def status_for(error: RestoreError) -> int:
    """HTTP status of a domain error, looked up along its class hierarchy."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_response(status: int, code: str, message: str, **extra: object) -> JSONResponse:
    """The one error body: ``{code, message}`` (and ``detail`` for invalid requests)."""
    return JSONResponse({"code": code, "message": message, **extra}, status_code=status)


def domain_response(error: RestoreError) -> JSONResponse:
    """The answer to a domain error: its status and body, with the headers some need.

    401 says how to authenticate (``WWW-Authenticate: Bearer``); 429 when to retry.
    """
    response = error_response(status_for(error), error.code, error.message)
    if isinstance(error, Unauthenticated):
        response.headers["WWW-Authenticate"] = 'Bearer realm="slide-restore"'
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after_s)
    return response


async def _domain_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RestoreError)
    return domain_response(error)


async def _invalid_request(_request: Request, error: Exception) -> JSONResponse:
    """A request that does not match its schema: 422 naming each field and what is wrong.

    A JSON route sent a body of another type (FastAPI then validates its bytes) gets 415.
    """
    assert isinstance(error, RequestValidationError)
    if any(e["loc"] == ("body",) and isinstance(e.get("input"), bytes) for e in error.errors()):
        return error_response(415, "unsupported_media_type", "send the body as application/json")
    problems = [
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: "
        + ("unknown field" if e["type"] == "extra_forbidden" else e["msg"])
        for e in error.errors()
    ]
    detail = [{k: v for k, v in e.items() if k != "ctx"} for e in error.errors()]
    detail = jsonable_encoder(
        detail, custom_encoder={bytes: lambda b: b.decode("utf-8", "replace")}
    )
    return error_response(422, "invalid_request", "; ".join(problems), detail=detail)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    """Starlette's own errors (unknown path, wrong method, unparsable body) as ``ErrorBody``."""
    assert isinstance(error, HTTPException)
    response = error_response(
        error.status_code, HTTP_CODES.get(error.status_code, "http_error"), str(error.detail)
    )
    response.headers.update(error.headers or {})
    if error.status_code == 405:
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes on this path.

    Each route takes one method, so Starlette's own ``Allow`` names only the first route's;
    here each method is tried against every route.
    """
    routes = request.app.router.routes
    allowed = []
    for method in METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return allowed


async def _server_error(_request: Request, _error: Exception) -> JSONResponse:
    """An unexpected failure: 500 whose message names nothing of the server (the log does)."""
    return error_response(500, "internal_error", "internal error; the server log has the details")


class RefuseControlCharacters:
    """404 for a path with control characters (``%00``, ``%0a``...): no resource has one.

    Refused before routing, so no route passes such a name to the file system or the database
    (PostgreSQL cannot even compare a string holding NUL).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 404 at once, or pass the request on."""
        if scope["type"] == "http" and CONTROL_CHARACTERS.search(scope["path"]):
            message = "no resource has a path with control characters"
            await error_response(404, "not_found", message)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    """Give ``app`` the error handlers and the path check."""
    app.add_exception_handler(RestoreError, _domain_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _server_error)
    app.add_middleware(RefuseControlCharacters)
