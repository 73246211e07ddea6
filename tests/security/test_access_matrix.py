"""Roles x endpoints: every route of the application, called by every kind of caller.

Each route is classified (open, read, submit, admin); a route the application has and the
table lacks fails the test, so a new route cannot ship unclassified. Callers: no key, an
invalid, a revoked and an expired key, keys with read, submit and admin of tenant ``default``
(which owns the objects in the paths), and the admin key of tenant ``other``.
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tifffile
from fastapi.routing import iter_route_contexts

from app.main import create_app
from tests.app.server import Server, upload, wait_for_job
from tests.security.conftest import key_id
from workers.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OPEN, READ, SUBMIT, ADMIN = "open", "read", "submit", "admin"
SCOPES = {READ: {READ, SUBMIT, ADMIN}, SUBMIT: {SUBMIT, ADMIN}, ADMIN: {ADMIN}}
UNAUTHENTICATED = ("none", "invalid", "revoked", "expired")
CALLERS = (*UNAUTHENTICATED, "read", "other", "submit", "admin")  # other before the deletes
LASER = {"mode": "laser-scan", "pixel_size_um": 0.5, "frame_rate_hz": 10, "bidirectional": False}


@dataclass(frozen=True)
class Call:
    """How one route is called: its scope, and the body of a POST."""

    scope: str
    json: dict[str, Any] | None = None
    files: str | None = None  # "slide" or "sequence": a multipart upload
    owned_in_body: bool = False  # the body names tenant default's slide (404 for others)
    ids: dict[str, str] = field(default_factory=dict)  # path values other than the shared ones


ROUTES: dict[tuple[str, str], Call] = {
    ("GET", "/"): Call(OPEN),
    ("GET", "/docs"): Call(OPEN),
    ("GET", "/openapi.json"): Call(OPEN),
    ("HEAD", "/openapi.json"): Call(OPEN),
    ("GET", "/health"): Call(OPEN),
    ("GET", "/health/live"): Call(OPEN),
    ("GET", "/static"): Call(OPEN),
    ("POST", "/v1/slides"): Call(SUBMIT, files="slide"),
    ("GET", "/v1/slides"): Call(READ),
    ("GET", "/v1/slides/{slide_id}"): Call(READ),
    ("GET", "/v1/slides/{slide_id}/thumbnail"): Call(READ),
    ("GET", "/v1/slides/{slide_id}/image.dzi"): Call(READ),
    ("GET", "/v1/slides/{slide_id}/image_files/{level}/{col}_{row}.jpeg"): Call(READ),
    ("DELETE", "/v1/slides/{slide_id}"): Call(SUBMIT, ids={"slide_id": "victim_slide"}),
    ("POST", "/v1/sequences"): Call(SUBMIT, files="sequence"),
    ("GET", "/v1/sequences"): Call(READ),
    ("GET", "/v1/sequences/{sequence_id}"): Call(READ),
    ("GET", "/v1/sequences/{sequence_id}/thumbnail"): Call(READ),
    ("GET", "/v1/sequences/{sequence_id}/frames/{t}/image.dzi"): Call(READ),
    (
        "GET",
        "/v1/sequences/{sequence_id}/frames/{t}/image_files/{level}/{col}_{row}.jpeg",
    ): Call(READ),
    ("DELETE", "/v1/sequences/{sequence_id}"): Call(SUBMIT, ids={"sequence_id": "victim_seq"}),
    ("POST", "/v1/jobs"): Call(SUBMIT, json={"model": "identity"}, owned_in_body=True),
    ("GET", "/v1/jobs"): Call(READ),
    ("GET", "/v1/jobs/{job_id}"): Call(READ),
    ("DELETE", "/v1/jobs/{job_id}"): Call(SUBMIT, ids={"job_id": "victim_job"}),
    ("DELETE", "/v1/jobs/{job_id}/output"): Call(SUBMIT),
    ("GET", "/v1/jobs/{job_id}/output.zarr/{file_path:path}"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/hooks/{name}/centroids.geojson"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/output.ome.tiff"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/tiles.csv"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/tiles.parquet"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/blur-map.png"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/report"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/output.dzi"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/output_files/{level}/{col}_{row}.jpeg"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/frames/{t}/output.dzi"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/frames/{t}/output_files/{level}/{col}_{row}.jpeg"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/input.dzi"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/input_files/{level}/{col}_{row}.jpeg"): Call(READ),
    ("GET", "/v1/jobs/{job_id}/frames.csv"): Call(READ),
    ("GET", "/v1/models"): Call(READ),
    ("GET", "/v1/hooks"): Call(READ),
    (
        "POST",
        "/v1/webhooks",
    ): Call(SUBMIT, json={"url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef"}),
    ("GET", "/v1/webhooks"): Call(READ),
    ("GET", "/v1/webhooks/{webhook_id}"): Call(READ),
    ("DELETE", "/v1/webhooks/{webhook_id}"): Call(SUBMIT),
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): Call(READ),
    ("POST", "/v1/keys"): Call(ADMIN, json={"name": "matrix", "scopes": ["read"]}),
    ("GET", "/v1/keys"): Call(ADMIN),
    ("DELETE", "/v1/keys/{key_id}"): Call(ADMIN),
    ("GET", "/v1/audit"): Call(ADMIN),
    ("GET", "/v1/audit/export.jsonl"): Call(ADMIN),
}


def application_routes() -> set[tuple[str, str]]:
    """(method, path) of every route ``create_app()`` serves; a mount counts as its GET."""
    found = set()
    for context in iter_route_contexts(create_app(Settings()).routes):
        methods = getattr(context.original_route, "methods", None) or {"GET"}
        found |= {(method, context.path or "") for method in methods}
    return found


def test_every_route_is_classified() -> None:
    routes = application_routes()
    assert routes - ROUTES.keys() == set(), "classify these routes in ROUTES"
    assert ROUTES.keys() - routes == set(), "these routes are gone: drop them from ROUTES"


def frames_tiff() -> bytes:
    buffer = io.BytesIO()
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    tifffile.imwrite(buffer, frames, photometric="minisblack")
    return buffer.getvalue()


@dataclass
class World:
    """Tenant default's objects that the paths name, and what the uploads send."""

    ids: dict[str, str]
    slide_bytes: bytes
    sequence_bytes: bytes


@pytest.fixture(scope="module")
def world(secured: Server, callers: dict[str, str | None], pyramid_tiff: Path) -> World:
    with secured.client(timeout=120) as client:
        slide = upload(client, pyramid_tiff).json()
        victim = upload(client, pyramid_tiff).json()
        sequence_bytes = frames_tiff()
        sequences = [
            client.post(
                "/v1/sequences",
                files={"file": ("frames.tif", sequence_bytes)},
                data={"metadata": json.dumps(LASER)},
            ).json()
            for _ in range(2)
        ]
        body = {"slide_id": slide["id"], "model": "identity", "hooks": ["nuclei-count"]}
        job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["state"] == "completed", job["error"]
        slow = {"slide_id": slide["id"], "model": "blur3x3", "tile_px": 32}
        victim_job = client.post("/v1/jobs", json={**slow, "skip_background": False}).json()
        hook = {"url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef"}
        webhook = client.post("/v1/webhooks", json=hook).json()
        spare = client.post("/v1/keys", json={"name": "spare", "scopes": ["read"]}).json()
    ids = {
        "slide_id": slide["id"],
        "victim_slide": victim["id"],
        "sequence_id": sequences[0]["id"],
        "victim_seq": sequences[1]["id"],
        "job_id": job["id"],
        "victim_job": victim_job["id"],
        "webhook_id": webhook["id"],
        "key_id": spare["id"],
        "file_path": ".zattrs",
        "name": "nuclei-count",
        "t": "0",
        "level": "0",
        "col": "0",
        "row": "0",
    }
    return World(ids, pyramid_tiff.read_bytes(), sequence_bytes)


def url_of(path: str, call: Call, world: World) -> str:
    if path == "/static":
        return "/static/home.js"

    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        return world.ids[call.ids.get(name, name)]

    return re.sub(r"\{([^}]+)\}", value, path)


def request(
    client: httpx.Client, method: str, path: str, call: Call, world: World, key: str | None
) -> httpx.Response:
    headers = {} if key is None else {"X-API-Key": key}
    kwargs: dict[str, Any] = {"headers": headers}
    if call.json is not None:
        body = dict(call.json)
        if call.owned_in_body:
            body["slide_id"] = world.ids["slide_id"]
        kwargs["json"] = body
    if call.files == "slide":
        kwargs["files"] = {"file": ("slide.tif", world.slide_bytes)}
    if call.files == "sequence":
        kwargs["files"] = {"file": ("frames.tif", world.sequence_bytes)}
        kwargs["data"] = {"metadata": json.dumps(LASER)}
    return client.request(method, url_of(path, call, world), **kwargs)


def verdict(call: Call, path: str, caller: str, response: httpx.Response, world: World) -> str:
    """'' when the answer is as expected, else what is wrong."""
    status = response.status_code
    if call.scope == OPEN:
        return "" if status not in (401, 403, 429) else f"open route answered {status}"
    if caller in UNAUTHENTICATED:
        bearer = response.headers.get("www-authenticate", "").startswith("Bearer")
        ok = status == 401 and bearer and response.json()["code"] == "unauthenticated"
        return "" if ok else f"expected 401 with WWW-Authenticate, got {status}"
    if caller == "other":
        if "{" in path or call.owned_in_body:
            return "" if status == 404 else f"another tenant's object answered {status}"
        if status == 403 or status >= 500:
            return f"another tenant's admin got {status} on its own list or create"
        leaked = [v for v in world.ids.values() if len(v) >= 16 and v in response.text]
        return f"another tenant sees {leaked}" if leaked else ""
    if caller not in SCOPES[call.scope]:
        ok = status == 403 and response.json()["code"] == "forbidden"
        return "" if ok else f"expected 403 without the {call.scope} scope, got {status}"
    return "" if status not in (401, 403, 429) and status < 500 else f"refused: {status}"


def test_roles_x_endpoints(secured: Server, callers: dict[str, str | None], world: World) -> None:
    time.sleep(0.2)  # the expired key's lifetime (0.09 s) is over
    ordered = sorted(ROUTES.items(), key=lambda item: item[0][0] == "DELETE")  # deletes last
    failures, done, refused_other, unreached = [], 0, 0, []
    with httpx.Client(base_url=secured.url, timeout=120) as client:
        for (method, path), call in ordered:
            answers = {}
            for caller in CALLERS:
                response = request(client, method, path, call, world, callers[caller])
                answers[caller] = response.status_code
                problem = verdict(call, path, caller, response, world)
                done += 1
                if problem:
                    failures.append(f"{method} {path} as {caller}: {problem}")
            owned = "{" in path or call.owned_in_body
            if call.scope != OPEN and owned and answers["other"] == 404:
                refused_other += 1
                if answers["submit"] == 404 and answers["admin"] == 404:
                    unreached.append(path.removeprefix("/v1/jobs/{job_id}/"))
    expected = len(ROUTES) * len(CALLERS)
    print(
        f"\nroles x endpoints: {len(ROUTES)} routes x {len(CALLERS)} callers, "
        f"{done - len(failures)}/{expected} as expected; another tenant got 404 on "
        f"{refused_other} routes naming an object, {refused_other - len(unreached)} of which its "
        f"owner reached (not the identity job's {', '.join(unreached)})"
    )
    assert failures == [] and done == expected, "\n".join(failures)


def test_another_tenant_cannot_use_its_ids_in_a_job(
    secured: Server, callers: dict[str, str | None], world: World
) -> None:
    with secured.client(key=callers["other"]) as other:
        own = upload_bytes(other, world.slide_bytes)
        body = {"slide_id": own["id"], "model": "identity"}
        reference = {**body, "reference_slide_id": world.ids["slide_id"]}
        refused = other.post("/v1/jobs", json=reference)
        assert refused.status_code == 404 and refused.json()["code"] == "not_found", refused.text
        sequence = other.post("/v1/jobs", json={"sequence_id": world.ids["sequence_id"]})
        assert sequence.status_code == 404
        listed = [s["id"] for s in other.get("/v1/slides").json()]
        assert own["id"] in listed and world.ids["slide_id"] not in listed


def upload_bytes(client: httpx.Client, content: bytes) -> dict[str, Any]:
    response = client.post("/v1/slides", files={"file": ("slide.tif", content)})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_revoked_spare_key_is_refused(secured: Server, world: World) -> None:
    """The spare key the matrix revoked (DELETE /v1/keys/{id}) no longer opens anything."""
    with secured.client() as client:
        listed = {k["id"]: k for k in client.get("/v1/keys").json()}
    assert listed[world.ids["key_id"]]["revoked_at"] is not None
    assert key_id(secured.key) in listed
