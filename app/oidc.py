"""OIDC bearer tokens (e.g. from Keycloak): signature, issuer, audience and expiry, by PyJWT.

Off unless ``RESTORE_OIDC_ISSUER`` is set. The signing keys come from the issuer's JWKS URL
(fetched and cached by ``jwt.PyJWKClient``) or from a local JWKS or PEM file. The caller's
tenant is the ``RESTORE_OIDC_TENANT_CLAIM`` claim (a token without it is refused); its scopes
are the space-separated ``scope`` claim's ``read``, ``submit`` and ``admin``, plain or as
``restore:read``, ``restore:submit``, ``restore:admin``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from workers.api_keys import SCOPES, TENANT, granted
from workers.settings import Settings

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
SCOPE_PREFIX = "restore:"
LEEWAY_S = 30  # clock skew between the issuer and this server


class OidcVerifier:
    """Checks bearer tokens against one issuer and audience."""

    def __init__(self, settings: Settings) -> None:
        if not (settings.oidc_issuer and settings.oidc_audience):
            raise ValueError("OIDC needs RESTORE_OIDC_ISSUER and RESTORE_OIDC_AUDIENCE")
        if not (settings.oidc_jwks_url or settings.oidc_jwks_file):
            raise ValueError("OIDC needs RESTORE_OIDC_JWKS_URL or RESTORE_OIDC_JWKS_FILE")
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.tenant_claim = settings.oidc_tenant_claim
        self._client = None
        self._keys: dict[str, Any] = {}
        if settings.oidc_jwks_url:
            self._client = jwt.PyJWKClient(settings.oidc_jwks_url, lifespan=300, timeout=5)
        else:
            assert settings.oidc_jwks_file is not None
            self._keys = _file_keys(settings.oidc_jwks_file)

    def claims(self, token: str) -> dict[str, Any] | None:
        """The token's claims when it is valid for this issuer and audience, else None."""
        try:
            key = self._signing_key(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except (jwt.PyJWTError, KeyError, ValueError):
            return None
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str) or not TENANT.match(tenant):
            return None
        return claims

    def scopes(self, claims: dict[str, Any]) -> frozenset[str]:
        """The scopes the token grants (admin implies submit, submit implies read)."""
        words = str(claims.get("scope", "")).split()
        named = [w.removeprefix(SCOPE_PREFIX) for w in words]
        return granted([s for s in named if s in SCOPES])

    def _signing_key(self, token: str) -> Any:
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        if kid in self._keys:
            return self._keys[kid]
        if len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise KeyError("no key with the token's kid")


def _file_keys(path: Path) -> dict[str, Any]:
    """The keys of a JWKS (JSON) file by kid, or a PEM public key under ``""``."""
    text = path.read_text()
    if text.lstrip().startswith("{"):
        keys = jwt.PyJWKSet.from_dict(json.loads(text)).keys
        return {str(k.key_id or index): k.key for index, k in enumerate(keys)}
    return {"": load_pem_public_key(text.encode())}
