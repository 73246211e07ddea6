"""The OpenAPI document against the real server: every answer documented, odd paths 4xx.

Schemathesis generates requests from ``/openapi.json`` (valid and invalid ones, and
sequences that follow created ids) and checks each answer against the document: status,
media type, body schema, ``Allow`` on 405, no server error.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.app.server import Server, upload, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ERROR_CODES = {"400", "404", "409", "410", "413", "415", "422"}
CHECKED_STATUSES = '["2xx", "404", "409", "410", "413", "415", "422"]'
SEED = 20231


@pytest.fixture(scope="module")
def finished_job(embedded: Server, pyramid_tiff: Path) -> dict:
    with embedded.client(timeout=60) as client:
        slide = upload(client, pyramid_tiff).json()
        body = {"slide_id": slide["id"], "model": "identity", "hooks": ["nuclei-count"]}
        job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"])
    assert job["state"] == "completed", job["error"]
    return job


def odd_paths(job: dict) -> list[str]:
    base = f"/v1/jobs/{job['id']}"
    return [
        f"{base}/output.zarr/%00",
        f"{base}/output.zarr/a%00b",
        f"{base}/output.zarr/0/%0a.zarray",
        f"{base}/output.zarr/{'a' * 5000}",  # longer than a file name may be
        f"{base}/output.zarr/..%2f..%2f..%2fjobs.db",
        f"{base}/output.zarr/%ff%fe",
        f"{base}/hooks/%00/centroids.geojson",
        f"{base}/hooks/..%2f..%2f/centroids.geojson",
        f"{base}/output_files/%00/0_0.jpeg",
        "/v1/jobs/a%00b",
        "/v1/jobs/%e2%80%ae%00",
        f"/v1/slides/{job['slide_id']}%00/thumbnail",
        "/v1/slides/..%2f..%2fjobs.db",
        "/v1/sequences/%1b[31m",
        "/v1/webhooks/%00/deliveries",
    ]


def test_nul_and_odd_paths_get_4xx_without_server_paths(
    embedded: Server, client: httpx.Client, finished_job: dict
) -> None:
    data_dir = str(Path(embedded.env["RESTORE_DATA_DIR"]).resolve().parent)
    for path in odd_paths(finished_job):
        response = client.get(path)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        body = response.json()
        assert body["code"] and body["message"], path
        assert data_dir not in response.text and "/tmp" not in body["message"], path
    print(f"\n{len(odd_paths(finished_job))} odd paths: every one 4xx with {{code, message}}")
    refused = client.post("/v1/jobs", json={"slide_id": "a\u0000b", "model": "identity"})
    assert refused.status_code == 422 and "slide_id" in refused.json()["message"]


def test_a_wrong_method_gets_405_naming_every_allowed_one(client: httpx.Client) -> None:
    for path, allowed in (("/v1/jobs", "GET, POST"), ("/v1/jobs/x", "GET, DELETE")):
        response = client.request("PATCH", path)
        assert response.status_code == 405 and response.headers["allow"] == allowed
        assert response.json()["code"] == "method_not_allowed"


def test_a_body_of_another_media_type_gets_415(client: httpx.Client) -> None:
    response = client.post(
        "/v1/jobs", content=b'{"slide_id": "x"}', headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"


def test_the_document_declares_errors_and_upload_forms(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in str(document)  # FastAPI's 422, which we never answer
    undocumented = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            has_ids = "{" in path
            codes = set(operation["responses"]) & ERROR_CODES
            if (has_ids and "404" not in codes) or (method == "post" and "422" not in codes):
                undocumented.append(f"{method.upper()} {path}")
            for code in codes:
                schema = operation["responses"][code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, code)
    assert undocumented == []
    for path, fields in (("/v1/slides", {"file"}), ("/v1/sequences", {"file", "metadata"})):
        post = document["paths"][path]["post"]
        form = post["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert set(form["required"]) == fields and form["properties"]["file"]["format"] == "binary"
        assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])


def run_schemathesis(server: Server, config: Path, tmp_path: Path, *selection: str) -> str:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "20",
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
        "--header",
        f"X-API-Key: {server.key}",
        *selection,
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    summary = re.search(r"(\d+) generated.*", done.stdout)
    print(f"\nschemathesis {' '.join(selection)}: {summary.group(0) if summary else '?'}")
    assert done.returncode == 0, done.stdout[-6000:]
    return done.stdout


def test_schemathesis_finds_no_mismatch_with_the_document(
    embedded: Server, finished_job: dict, tmp_path: Path
) -> None:
    """Every generated request's answer matches the document; ids of a real finished job and
    slide are used for most of them, so the file routes answer files too.

    422 (and 409, 410, 413, 415) are accepted for requests the schema allows: a model that is
    not installed, a region outside the slide or an upload that is no slide cannot be told by
    JSON Schema. DELETEs run last, so that the others find the output still there.
    """
    pytest.importorskip("schemathesis")
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f"""
[checks.positive_data_acceptance]
expected-statuses = {CHECKED_STATUSES}

[dictionaries.jobs]
values = ["{finished_job["id"]}"]
[dictionaries.slides]
values = ["{finished_job["slide_id"]}"]
[dictionaries.files]
values = [".zattrs", ".zgroup", "0/.zarray", "0/0.0.0", "labels/blur/.zattrs", "../jobs.db"]
[dictionaries.hooks]
values = ["nuclei-count"]

[parameters]
"path.job_id" = {{ dictionary = "jobs", probability = 0.8 }}
"path.slide_id" = {{ dictionary = "slides", probability = 0.8 }}
"path.file_path" = {{ dictionary = "files", probability = 0.5 }}
"path.name" = {{ dictionary = "hooks", probability = 0.5 }}
"""
    )
    run_schemathesis(embedded, config, tmp_path, "--exclude-method", "DELETE")
    run_schemathesis(embedded, config, tmp_path, "--include-method", "DELETE")
