"""Who is calling: API keys or OIDC tokens, checked before any route runs; scopes per route.

:class:`Authenticate` (ASGI middleware) answers 401 to a request without a valid credential on
every path but the open ones (health, the viewer's page and assets, the API documentation),
and 429 past the caller's rate, before the request's body is read. A key is sent as
``X-API-Key: <key>`` or ``Authorization: Bearer <key>``; a bearer value that is not an API key
(``rsk_...``) is tried as an OIDC token when OIDC is configured. Routes then ask for a scope
with :func:`require` or :func:`authorize` (403 without it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app import errors
from app.oidc import OidcVerifier
from app.rate_limit import RateLimiter
from workers import audit
from workers.api_keys import PREFIX, ApiKeys, granted
from workers.errors import Forbidden, RestoreError, Unauthenticated
from workers.settings import Settings
from workers.store import Store

READ, SUBMIT, ADMIN = "read", "submit", "admin"
METHOD_SCOPES = {"GET": READ, "HEAD": READ, "POST": SUBMIT, "DELETE": SUBMIT}
OPEN_PATHS = frozenset({"/", "/health", "/health/live", "/docs", "/openapi.json"})
OPEN_PREFIX = "/static/"
MISSING = "send an API key: X-API-Key: <key> or Authorization: Bearer <key>"
INVALID = "the API key or token is not valid (unknown, expired or revoked)"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: its key id (or ``oidc:<subject>``), tenant and scopes."""

    key_id: str
    tenant: str
    scopes: frozenset[str]


def is_open(path: str) -> bool:
    """Whether a path answers without a credential (it reveals no slide, job or output)."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIX)


def credential(headers: Headers) -> str | None:
    """The key or token of a request: ``X-API-Key``, else a bearer ``Authorization``."""
    key = headers.get("x-api-key", "").strip()
    if key:
        return key
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


class Authenticate:
    """Answers 401 or 429 for protected paths, else passes the request on with its caller."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.requests = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        self.failures = RateLimiter(
            settings.auth_failures_per_s, settings.auth_failures_burst, "invalid credentials"
        )
        self.oidc = OidcVerifier(settings) if settings.oidc_issuer else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Identify the caller of a protected path (in a thread: it reads the database)."""
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        address = (scope.get("client") or ("unknown", 0))[0]
        store: Store = scope["app"].state.services.store
        headers = Headers(scope=scope)
        try:
            caller = await run_in_threadpool(self.identify, headers, address, store)
            self.requests.take(caller.key_id)
        except RestoreError as error:
            if isinstance(error, Unauthenticated):
                await run_in_threadpool(_record_failure, store, headers, address, str(error))
            await errors.domain_response(error)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)

    def identify(self, headers: Headers, address: str, store: Store) -> Caller:
        """The caller a request's credential names, or :class:`Unauthenticated`.

        An invalid credential takes a token of its client address's failure bucket, so
        guessing keys is slowed to ``auth_failures_per_s`` (429 past it).
        """
        token = credential(headers)
        if token is None:
            raise Unauthenticated(MISSING)
        caller = self._verify(token, store)
        if caller is None:
            self.failures.take(address)
            raise Unauthenticated(INVALID)
        return caller

    def _verify(self, token: str, store: Store) -> Caller | None:
        if token.startswith(PREFIX):
            key = ApiKeys(store).verify(token)
            return None if key is None else Caller(key["id"], key["tenant"], granted(key["scopes"]))
        claims = None if self.oidc is None else self.oidc.claims(token)
        if claims is None or self.oidc is None:
            return None
        tenant = claims[self.oidc.tenant_claim]
        return Caller(f"oidc:{claims['sub']}", tenant, self.oidc.scopes(claims))


def _record_failure(store: Store, headers: Headers, address: str, reason: str) -> None:
    """An ``auth.failed`` audit event: the key's public id if it looks like a key, never more."""
    token = credential(headers) or ""
    parts = token.split("_")
    looks_like_key = token.startswith(PREFIX) and len(parts) >= 3 and parts[1].isalnum()
    actor = parts[1][:32] if looks_like_key else ("token" if token else "anonymous")
    kind = "missing" if reason == MISSING else "invalid"
    audit.record(store, "auth.failed", actor=actor, detail=f"{kind} credential from {address}")


def caller(request: Request) -> Caller:
    """The request's caller, as :class:`Authenticate` found it."""
    found = request.scope.get("state", {}).get("caller")
    if not isinstance(found, Caller):
        raise Unauthenticated(MISSING)  # a protected route on an open path: refuse, never serve
    return found


CallerDep = Annotated[Caller, Depends(caller)]


def _check(found: Caller, scope: str) -> Caller:
    if scope not in found.scopes:
        have = ", ".join(sorted(found.scopes)) or "none"
        raise Forbidden(f"this needs the {scope} scope; the credential has {have}")
    return found


def require(scope: str) -> Callable[[Caller], Caller]:
    """A dependency that answers 403 unless the caller has ``scope``."""

    def check(found: CallerDep) -> Caller:
        return _check(found, scope)

    return check


def authorize(request: Request, found: CallerDep) -> Caller:
    """The scope a request's method needs: read to GET, submit to POST or DELETE (else 403)."""
    return _check(found, METHOD_SCOPES.get(request.method, ADMIN))
