"""Pixel sizes a user can trust, and stacks that are not slides: through HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile

from tests import fixtures
from tests.app.server import Server, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _tiff(path: Path, dpi: float | None) -> Path:
    """A tiled RGB TIFF of tissue whose resolution tags say ``dpi`` (an editor's default)."""
    extra = {"resolution": (dpi, dpi), "resolutionunit": "INCH"} if dpi else {}
    tifffile.imwrite(
        path, fixtures.tissue_image(600, 700), tile=(256, 256), photometric="rgb", **extra
    )
    return path


def _post(client: httpx.Client, path: Path, mpp: str | None = None) -> httpx.Response:
    data = {} if mpp is None else {"mpp": mpp}
    with path.open("rb") as handle:
        return client.post("/v1/slides", files={"file": (path.name, handle)}, data=data)


def _output_scale(server: Server, job: dict) -> tuple[list[float], dict]:
    attrs = httpx.get(f"{server.url}{job['output_url']}/.zattrs", headers=server.headers).json()
    multiscales = attrs["multiscales"][0]
    return multiscales["datasets"][0]["coordinateTransformations"][0]["scale"], multiscales["axes"][
        2
    ]


def test_a_72_dpi_default_is_no_pixel_size(client: httpx.Client, tmp_path: Path) -> None:
    slide = _post(client, _tiff(tmp_path / "editor.tif", 72)).json()
    assert slide["mpp_x"] is None and slide["mpp_source"] is None  # 352.8 um/px is not a microscope
    scanner = _post(client, _tiff(tmp_path / "scanner.tif", 25400 / 0.5)).json()
    assert scanner["mpp_x"] == pytest.approx(0.5) and scanner["mpp_source"] == "file"


def test_an_upload_or_a_job_may_give_the_pixel_size(
    client: httpx.Client, embedded: Server, tmp_path: Path
) -> None:
    path = _tiff(tmp_path / "editor.tif", 96)
    given = _post(client, path, mpp="0.25").json()
    assert given["mpp_x"] == given["mpp_y"] == 0.25 and given["mpp_source"] == "upload"
    for bad in ("abc", "-1", "0", "5000"):
        response = _post(client, path, mpp=bad)
        assert response.status_code == 422 and "mpp" in response.json()["message"], bad
    unknown = _post(client, path).json()
    body = {"slide_id": unknown["id"], "model": "identity", "mpp": 0.5}
    job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"])
    assert job["state"] == "completed", job["error"]
    scale, x_axis = _output_scale(embedded, job)
    assert scale == [1.0, 0.5, 0.5] and x_axis["unit"] == "micrometer"
    body = {"slide_id": unknown["id"], "model": "identity"}
    job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"])
    _, x_axis = _output_scale(embedded, job)
    assert "unit" not in x_axis  # unknown stays unknown, never 352.8 um
    bad_job = client.post("/v1/jobs", json={**body, "mpp": -2})
    assert bad_job.status_code == 422 and "mpp" in bad_job.json()["message"]


def test_a_tiff_stack_is_refused_with_a_pointer_to_sequences(
    client: httpx.Client, tmp_path: Path
) -> None:
    path = tmp_path / "timelapse.tif"
    frames = np.stack([fixtures.tissue_image(128, 160, seed=s) for s in range(3)])
    tifffile.imwrite(path, frames, photometric="rgb")
    response = _post(client, path)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert "stack of 3" in message and "POST /v1/sequences" in message
    assert str(tmp_path) not in message and json.dumps(message).count("/v1/") == 1
