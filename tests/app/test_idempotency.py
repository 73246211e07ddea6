"""Idempotency-Key through HTTP: a retried create request never creates a second resource."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile

from tests.app.server import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LASER = {"mode": "laser-scan", "pixel_size_um": 0.4, "frame_rate_hz": 15.0, "bidirectional": True}
CONCURRENT = 10


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def post_slide(server: Server, path: Path, key: str, name: str | None = None) -> httpx.Response:
    with server.client(timeout=120) as client:
        files = {"file": (name or path.name, path.read_bytes())}
        return client.post("/v1/slides", files=files, headers=keyed(key))


def count(client: httpx.Client, collection: str) -> int:
    return len(client.get(f"/v1/{collection}").json())


@pytest.fixture(scope="module")
def slide(embedded: Server, pyramid_tiff: Path) -> dict:
    response = post_slide(embedded, pyramid_tiff, "fixture-slide")
    assert response.status_code == 201, response.text
    return response.json()


def test_concurrent_identical_job_posts_with_one_key_create_one_job(
    embedded: Server, client: httpx.Client, slide: dict
) -> None:
    body = {"slide_id": slide["id"], "model": "identity", "metadata": {"accession": "A-1"}}
    before = count(client, "jobs")

    def post(_: int) -> httpx.Response:
        with embedded.client(timeout=60) as own:
            return own.post("/v1/jobs", json=body, headers=keyed("job-retry-1"))

    with ThreadPoolExecutor(CONCURRENT) as pool:
        responses = list(pool.map(post, range(CONCURRENT)))
    created = count(client, "jobs") - before
    ids = {r.json()["id"] for r in responses}
    replayed = sum(r.headers.get("idempotent-replayed") == "true" for r in responses)
    print(f"\n{CONCURRENT} concurrent POST /v1/jobs with one Idempotency-Key: {created} job(s) "
          f"created, {len(ids)} distinct id(s) answered, {replayed} marked replayed")  # fmt: skip
    assert [r.status_code for r in responses] == [202] * CONCURRENT
    assert created == 1 and len(ids) == 1 and replayed == CONCURRENT - 1
    later = client.post("/v1/jobs", json=body, headers=keyed("job-retry-1"))
    assert later.status_code == 202 and later.json()["id"] in ids
    assert client.post("/v1/jobs", json=body).json()["id"] not in ids  # no key: a new job


def test_a_key_reused_with_a_different_body_is_refused(client: httpx.Client, slide: dict) -> None:
    first = client.post(
        "/v1/jobs", json={"slide_id": slide["id"], "model": "identity"}, headers=keyed("k-2")
    )
    assert first.status_code == 202
    same = client.post(  # the same request, fields reordered and a default spelled out
        "/v1/jobs",
        json={"model": "identity", "skip_background": True, "slide_id": slide["id"]},
        headers=keyed("k-2"),
    )
    assert same.status_code == 202 and same.json()["id"] == first.json()["id"]
    other = client.post(
        "/v1/jobs", json={"slide_id": slide["id"], "model": "blur3x3"}, headers=keyed("k-2")
    )
    assert other.status_code == 422, other.text
    assert "Idempotency-Key" in other.json()["message"]
    assert "different body" in other.json()["message"]


def test_a_retried_slide_upload_returns_the_first_slide(
    embedded: Server, client: httpx.Client, pyramid_tiff: Path, tmp_path: Path
) -> None:
    before = count(client, "slides")
    first = post_slide(embedded, pyramid_tiff, "upload-retry-1")
    again = post_slide(embedded, pyramid_tiff, "upload-retry-1")
    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert count(client, "slides") - before == 1
    print(f"\nslide upload sent twice with one key: {count(client, 'slides') - before} slide")
    other = tmp_path / "other.tif"
    other.write_bytes(pyramid_tiff.read_bytes()[:-1] + b"\0")
    refused = post_slide(embedded, other, "upload-retry-1")
    assert refused.status_code == 422 and "different body" in refused.json()["message"]
    assert count(client, "slides") - before == 1


def test_concurrent_uploads_with_one_key_create_one_slide(
    embedded: Server, client: httpx.Client, pyramid_tiff: Path
) -> None:
    before = count(client, "slides")
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: post_slide(embedded, pyramid_tiff, "up-3"), range(5)))
    statuses = sorted(r.status_code for r in responses)
    ids = {r.json()["id"] for r in responses if r.status_code == 201}
    print(f"\n5 concurrent uploads with one key: statuses {statuses}, "
          f"{count(client, 'slides') - before} slide created")  # fmt: skip
    assert set(statuses) <= {201, 409} and statuses[0] == 201
    assert all("in progress" in r.json()["message"] for r in responses if r.status_code == 409)
    assert len(ids) == 1 and count(client, "slides") - before == 1
    retry = post_slide(embedded, pyramid_tiff, "up-3")
    assert retry.status_code == 201 and retry.json()["id"] in ids


def test_a_failed_upload_frees_its_key(
    embedded: Server, client: httpx.Client, pyramid_tiff: Path, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a slide")
    assert post_slide(embedded, notes, "up-4").status_code == 415
    response = post_slide(embedded, pyramid_tiff, "up-4")
    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers


def test_a_deleted_slide_is_not_replayed(
    embedded: Server, client: httpx.Client, pyramid_tiff: Path
) -> None:
    slide = post_slide(embedded, pyramid_tiff, "up-5").json()
    assert client.delete(f"/v1/slides/{slide['id']}").status_code == 204
    again = post_slide(embedded, pyramid_tiff, "up-5")
    assert again.status_code == 409 and "was deleted" in again.json()["message"]


def test_a_retried_sequence_upload_returns_the_first_sequence(client: httpx.Client) -> None:
    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rng.integers(0, 255, (4, 96, 128), dtype=np.uint8))
    form = {"files": {"file": ("frames.tif", buffer.getvalue())}}
    form["data"] = {"metadata": json.dumps(LASER)}  # type: ignore[assignment]
    before = count(client, "sequences")
    first = client.post("/v1/sequences", **form, headers=keyed("seq-1"))  # type: ignore[arg-type]
    again = client.post("/v1/sequences", **form, headers=keyed("seq-1"))  # type: ignore[arg-type]
    assert first.status_code == again.status_code == 201, first.text
    assert again.json()["id"] == first.json()["id"]
    assert count(client, "sequences") - before == 1


def test_a_key_must_be_printable_ascii(client: httpx.Client, slide: dict) -> None:
    body = {"slide_id": slide["id"], "model": "identity"}
    for key in ("", "x" * 256, "with space"):
        response = client.post("/v1/jobs", json=body, headers=keyed(key))
        assert response.status_code == 422 and "Idempotency-Key" in response.json()["message"]
