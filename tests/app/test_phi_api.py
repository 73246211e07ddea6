"""PHI: canaries planted in a file name, a vendor description, a label image and DICOM patient
tags are found nowhere the server writes or answers, except the client's own file name where the
client sees its slide."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from pydicom.uid import generate_uid

from tests import fixtures
from tests.app.server import Server, wait_for_job
from tests.engine.test_dicom import dicom_instance, dicom_tissue

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NAME_CANARY = "CANARY-Doe-John-S26-4711"
HIDDEN = ("CANARYUSER9981", "CANARYFILE5566", "CANARYLABEL7788", "CANARYPATIENT4242")
APERIO = (
    "Aperio Image Library v12.0.15\r\n1024x768 [0,0 1024x768] (256x256) JPEG/RGB Q=70"
    "|AppMag = 20|MPP = 0.5|User = CANARYUSER9981|Filename = CANARYFILE5566"
    "|Date = 12/07/26"
)


def aperio_like(path: Path) -> Path:
    """A small SVS whose description and label carry canaries (OpenSlide reads it as Aperio)."""
    tissue = fixtures.tissue_image(768, 1024)
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            tissue, tile=(256, 256), photometric="rgb", compression="jpeg", description=APERIO
        )
        tif.write(tissue[::4, ::4], photometric="rgb", description="Aperio thumbnail")
        label = np.full((64, 64, 3), 255, np.uint8)
        tif.write(label, photometric="rgb", subfiletype=1, description="label CANARYLABEL7788")
    return path


def dicom_with_patient(path: Path) -> Path:
    dataset = dicom_instance(dicom_tissue(), generate_uid(), 0.5, jpeg=False)
    dataset.PatientName, dataset.PatientID = "CANARYPATIENT4242^Jane", "CANARYPATIENT4242"
    pydicom.dcmwrite(path, dataset, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, test_models: Path) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("phi")
    env = {"RESTORE_DATA_DIR": str(data / "var"), "RESTORE_MODELS_DIRS": f'["{test_models}"]'}
    server = Server(env, data / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def answers(server: Server, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Every answer a client gets for two slides, their jobs, outputs and exports."""
    folder = tmp_path_factory.mktemp("canaries")
    files = [
        aperio_like(folder / f"{NAME_CANARY}.svs"),
        dicom_with_patient(folder / f"{NAME_CANARY}.dcm"),
    ]
    texts: list[str] = []
    with server.client(timeout=120) as client:
        for path in files:
            response = client.post("/v1/slides", files={"file": (path.name, path.read_bytes())})
            assert response.status_code == 201, response.text
            slide = response.json()
            texts.append(response.text)
            body = {"slide_id": slide["id"], "model": "identity"}
            job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"])
            assert job["state"] == "completed", job["error"]
            base = f"/v1/jobs/{job['id']}"
            output = job["output_url"]
            urls = [base, "/v1/jobs", job["tiles_url"], job["report_url"], f"{base}/output.dzi"]
            for url in [*urls, f"{output}/.zattrs", f"{output}/0/.zarray"]:
                texts.append(client.get(url).text)
            while (tiff := client.get(f"{base}/output.ome.tiff")).status_code == 202:
                pass
            texts.append(tiff.content.decode("latin-1"))
    return texts


def test_no_answer_carries_a_canary_but_the_client_s_own_file_name(answers: list[str]) -> None:
    slide_answers = [a for a in answers if '"filename"' in a and '"level_count"' in a]
    assert len(slide_answers) == 2 and all(NAME_CANARY in a for a in slide_answers)  # its own
    for text in answers:
        assert not any(canary in text for canary in HIDDEN), text[:300]
        if text not in slide_answers:
            assert NAME_CANARY not in text, text[:300]


def test_nothing_written_carries_a_canary(server: Server, answers: list[str]) -> None:
    data = Path(server.env["RESTORE_DATA_DIR"])
    checked = 0
    for path in data.rglob("*"):
        assert NAME_CANARY not in str(path)  # stored under ids, not the client's name
        if not path.is_file() or path.parent.name in ("upload", "unpacked"):
            continue  # the uploaded file itself is the input, kept as received
        content = path.read_bytes()
        checked += 1
        database = path.name.startswith("jobs.db")  # the slides table keeps the client's name
        for canary in HIDDEN + (() if database else (NAME_CANARY,)):
            assert canary.encode() not in content, (path, canary)
    log = server.log.read_text(errors="replace")
    assert not any(canary in log for canary in (*HIDDEN, NAME_CANARY))
    with sqlite3.connect(data / "jobs.db") as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            for row in db.execute(f"select * from {table}"):
                text = " ".join(str(v) for v in row)
                assert not any(canary in text for canary in HIDDEN), (table, text[:200])
                if table != "slides":
                    assert NAME_CANARY not in text, (table, text[:200])
    print(f"{checked} files, the log and {len(tables)} tables: no canary")
