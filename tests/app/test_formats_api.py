"""Uploads a new user tries first, through HTTP against the real server: DICOM-WSI, refusals."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydicom.uid import generate_uid

from tests.app.server import Server, upload, wait_for_job
from tests.app.test_api import read_output
from tests.engine.test_dicom import (
    CT_SOP_CLASS,
    dicom_instance,
    dicom_tissue,
    write_dicom_series,
    zip_series,
)
from tests.fixtures import tissue_image, write_pyramid_tiff
from workers.engine.readers import open_slide

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _single_instance(folder: Path) -> tuple[Path, Path]:
    (path,) = write_dicom_series(folder / "made", dicom_tissue(), levels=1)
    return path, path


def _zipped_series(folder: Path) -> tuple[Path, Path]:
    files = write_dicom_series(folder / "made", dicom_tissue(), levels=2)
    return zip_series(files, folder / "series.zip"), files[0]


@pytest.mark.parametrize(
    ("make", "levels"), [(_single_instance, 1), (_zipped_series, 2)], ids=["instance", "zip"]
)
def test_a_dicom_slide_uploads_and_restores(
    embedded: Server,
    client: httpx.Client,
    tmp_path: Path,
    make: Callable[[Path], tuple[Path, Path]],
    levels: int,
) -> None:
    uploaded, base_level = make(tmp_path)
    response = upload(client, uploaded)
    assert response.status_code == 201, response.text
    slide = response.json()
    assert (slide["width"], slide["height"], slide["level_count"]) == (1024, 768, levels)
    assert slide["vendor"] == "dicom" and slide["reader"] == "openslide"
    assert slide["mpp_x"] == pytest.approx(0.25) and slide["mpp_y"] == pytest.approx(0.25)
    assert client.get(slide["thumbnail_url"]).headers["content-type"] == "image/png"
    created = client.post("/v1/jobs", json={"slide_id": slide["id"], "model": "identity"})
    job = wait_for_job(client, created.json()["id"])
    assert job["state"] == "completed", job["error"]
    expected = open_slide(base_level).read_region((0, 0), 0, (1024, 768))
    assert np.array_equal(read_output(embedded, job)[0], expected)


def _random_bytes(folder: Path) -> Path:
    path = folder / "scan.dcm"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    return path


def _ct_dicom(folder: Path) -> Path:
    ds = dicom_instance(dicom_tissue()[:256, :256], generate_uid(), 0.5, sop_class=CT_SOP_CLASS)
    ds.save_as(folder / "chest.dcm", enforce_file_format=True)
    return folder / "chest.dcm"


def _dicom_without_image_flavour(folder: Path) -> Path:
    ds = dicom_instance(dicom_tissue(), generate_uid(), 0.25, image_type=["ORIGINAL", "PRIMARY"])
    ds.save_as(folder / "odd.dcm", enforce_file_format=True)
    return folder / "odd.dcm"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_random_bytes, "scan.dcm is not a slide or image format this server reads"),
        (_ct_dicom, "chest.dcm is a DICOM file of CT, not a whole-slide image"),
        (_dicom_without_image_flavour, "odd.dcm is a DICOM whole-slide image this server cannot"),
    ],
    ids=["random-bytes", "ct-dicom", "dicom-without-image-flavour"],
)
def test_an_unsupported_file_is_415_with_a_reason_and_no_server_path(
    client: httpx.Client, tmp_path: Path, make: Callable[[Path], Path], reason: str
) -> None:
    response = upload(client, make(tmp_path))
    assert response.status_code == 415, response.text
    body = response.json()
    assert body["code"] == "unsupported_format" and reason in body["message"]
    assert "/" not in body["message"]


def _cut(fraction: float) -> Callable[[Path], bytes]:
    def make(folder: Path) -> bytes:
        data = write_pyramid_tiff(folder / "whole.tif", tissue_image(1200, 1500)).read_bytes()
        return data[: int(len(data) * fraction)]

    return make


def _header_pointing_past_the_end(folder: Path) -> bytes:
    """An SVS cut before its first directory (Aperio writes directories after the tiles)."""
    return b"II*\x00" + struct.pack("<I", 1_275_950) + bytes(4000)


@pytest.mark.parametrize(
    "make",
    [_cut(0.5), _cut(0.999), _header_pointing_past_the_end],
    ids=["half", "last-bytes", "directory-past-the-end"],
)
def test_a_truncated_svs_is_422_in_plain_words(
    client: httpx.Client, tmp_path: Path, make: Callable[[Path], bytes]
) -> None:
    (tmp_path / "t.svs").write_bytes(make(tmp_path))
    response = upload(client, tmp_path / "t.svs")
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith("t.svs is truncated or damaged: it ends at byte")
    assert "before the data its header points to" in message and "/" not in message
