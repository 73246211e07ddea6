"""OIDC bearer tokens: signed by the issuer's key (JWKS over HTTP), right issuer, audience, time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.oidc import OidcVerifier
from tests.app.server import Server
from workers.settings import Settings

ISSUER, AUDIENCE = "https://idp.hospital.lan/realms/lab", "slide-restore"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNER, STRANGER = rsa_key(), rsa_key()


def jwks(key: rsa.RSAPrivateKey, kid: str = "k1") -> dict[str, Any]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**public, "kid": kid, "use": "sig", "alg": "RS256"}]}


def token(key: rsa.RSAPrivateKey = SIGNER, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
    body |= {"tenant": "default", "scope": "openid restore:read"}
    body |= claims
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, "RS256", {"kid": "k1"})


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    """The issuer's signing keys, served on loopback as Keycloak serves its certs endpoint."""
    document = json.dumps(jwks(SIGNER)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/realms/lab/protocol/openid-connect/certs"
    server.shutdown()


@pytest.fixture(scope="module")
def oidc_server(
    tmp_path_factory: pytest.TempPathFactory, test_models: Path, jwks_url: str
) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("oidc")
    env = {
        "RESTORE_DATA_DIR": str(data / "var"),
        "RESTORE_MODELS_DIRS": f'["{test_models}"]',
        "RESTORE_OIDC_ISSUER": ISSUER,
        "RESTORE_OIDC_AUDIENCE": AUDIENCE,
        "RESTORE_OIDC_JWKS_URL": jwks_url,
    }
    server = Server(env, data / "server.log").start(wait_for_worker=False)
    yield server
    server.stop()


def status(server: Server, bearer: str, method: str = "GET", path: str = "/v1/jobs") -> int:
    headers = {"Authorization": f"Bearer {bearer}"}
    body = {"model": "identity", "slide_id": "x"} if method == "POST" else None
    return httpx.request(
        method, f"{server.url}{path}", headers=headers, json=body, timeout=30
    ).status_code


@pytest.mark.integration
@pytest.mark.slow
def test_tokens_are_checked_for_signature_issuer_audience_and_time(oidc_server: Server) -> None:
    expired = int(time.time()) - 3600
    answers = {
        "valid": status(oidc_server, token()),
        "read scope posts": status(oidc_server, token(), "POST"),
        "submit scope posts": status(oidc_server, token(scope="restore:submit"), "POST"),
        "plain admin lists keys": status(oidc_server, token(scope="admin"), path="/v1/keys"),
        "wrong audience": status(oidc_server, token(aud="another-app")),
        "wrong issuer": status(oidc_server, token(iss="https://evil.example/realms/lab")),
        "expired": status(oidc_server, token(exp=expired, iat=expired - 300)),
        "no expiry": status(oidc_server, token(exp=None)),
        "foreign key": status(oidc_server, token(STRANGER)),
        "no tenant": status(oidc_server, token(tenant=None)),
        "unsigned": status(oidc_server, jwt.encode({"iss": ISSUER}, None, "none")),
    }
    print(f"\nOIDC: {answers}")
    assert answers == {
        "valid": 200,
        "read scope posts": 403,
        "submit scope posts": 404,  # authorised; the slide does not exist
        "plain admin lists keys": 200,
        "wrong audience": 401,
        "wrong issuer": 401,
        "expired": 401,
        "no expiry": 401,
        "foreign key": 401,
        "no tenant": 401,
        "unsigned": 401,
    }
    assert status(oidc_server, token(tenant="lab2"), path="/v1/slides") == 200  # its tenant's


def test_a_local_jwks_or_pem_file_serves_air_gapped_sites(tmp_path: Path) -> None:
    pem = SIGNER.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "key.pem").write_bytes(pem)
    (tmp_path / "jwks.json").write_text(json.dumps(jwks(SIGNER)))
    for name in ("key.pem", "jwks.json"):
        settings = Settings(
            oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_file=tmp_path / name
        )
        verifier = OidcVerifier(settings)
        claims = verifier.claims(token(scope="restore:submit"))
        assert claims is not None and claims["sub"] == "alice", name
        assert verifier.scopes(claims) == {"read", "submit"}
        assert verifier.claims(token(STRANGER)) is None
        assert verifier.claims(token(aud="x")) is None
