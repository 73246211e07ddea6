"""What the OpenAPI document says beyond the routes' signatures: errors, files, forms, keys.

Every route declares the error statuses it can answer (each with the ``ErrorBody`` schema),
the media type of the files it returns, and, for the uploads that are read as streams rather
than as FastAPI parameters, the multipart form they expect. Every route but the open ones
(``app.auth.is_open``) names the two ways to send a key and answers 401, 403 and 429.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from app.auth import is_open
from app.schemas import ErrorBody

Responses = dict[int | str, dict[str, Any]]

ERRORS = {
    400: "malformed request (e.g. a body that is not JSON)",
    401: "no API key or token, or one that is unknown, expired or revoked",
    403: "the key or token lacks the scope this needs (read, submit, admin)",
    429: "too many requests from this key (or invalid keys from this address): see Retry-After",
    404: "no such slide, sequence, job, webhook or file (also a path with control characters)",
    409: "the resource is not in a state that allows this, or a request with the same "
    "Idempotency-Key is still in progress (retry)",
    410: "the job's output was deleted",
    413: "the upload, image or requested size exceeds a configured limit",
    415: "no reader opens the uploaded file, or a JSON route was sent another media type",
    422: "the request is well-formed but invalid (each problem named), or its "
    "Idempotency-Key was used with a different body",
}
BINARY = {"type": "string", "format": "binary"}
FASTAPI_422 = "#/components/schemas/HTTPValidationError"
FASTAPI_SCHEMAS = ("HTTPValidationError", "ValidationError")
REFUSAL_HEADERS = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "required": True,
            "description": "seconds until the key may send again",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "an API key or OIDC token"},
}


def errors(*codes: int) -> Responses:
    """The listed error statuses, each with the ``ErrorBody`` schema."""
    return {code: {"model": ErrorBody, "description": ERRORS[code]} for code in codes}


def file(media_types: str | tuple[str, ...], description: str, *codes: int) -> Responses:
    """A route that answers a file of one of ``media_types`` (plus the listed error statuses)."""
    types = (media_types,) if isinstance(media_types, str) else media_types
    ok = {"description": description, "content": {t: {"schema": _schema(t)} for t in types}}
    return {200: ok, **errors(*codes)}


def _schema(media_type: str) -> dict[str, Any]:
    if media_type.endswith("json"):
        return {}
    if media_type.startswith("text/") or media_type == "application/xml":
        return {"type": "string"}
    return BINARY


def multipart(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads a multipart form from the request stream."""
    schema = {"type": "object", "properties": properties, "required": required}
    return {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }


def install(app: FastAPI) -> None:
    """Document the 422 that FastAPI adds to each route with parameters as ``ErrorBody``.

    FastAPI describes it as its own ``HTTPValidationError``; the handler answers ``ErrorBody``.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _own_422(document)
            _secured(document)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def _own_422(document: dict[str, Any]) -> None:
    invalid = {
        "description": ERRORS[422],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for operations in document["paths"].values():
        for operation in operations.values():
            if FASTAPI_422 in json.dumps(operation["responses"].get("422", {})):
                operation["responses"]["422"] = invalid
    if FASTAPI_422 not in json.dumps(document["paths"]):
        for name in FASTAPI_SCHEMAS:
            document["components"]["schemas"].pop(name, None)


def _secured(document: dict[str, Any]) -> None:
    """Name the key schemes on every protected operation, with its 401, 403 and 429."""
    document["components"]["securitySchemes"] = SECURITY_SCHEMES
    body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    refused = {
        str(code): {"description": ERRORS[code], "content": body}
        | ({"headers": REFUSAL_HEADERS[code]} if code in REFUSAL_HEADERS else {})
        for code in (401, 403, 429)
    }
    for path, operations in document["paths"].items():
        if is_open(path):
            continue
        for operation in operations.values():
            operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
            operation["responses"].update(refused)
