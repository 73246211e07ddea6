"""Deleting a finished job's files over HTTP, and the retention sweep of ``python -m app``."""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.server import Server, start_slow_job, upload, wait_for_job
from workers.settings import Settings
from workers.store import Store, slides

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DAY_S = 86_400.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, test_models: Path) -> Iterator[Server]:
    """The embedded server, keeping outputs and uploads for a day, sweeping every second."""
    data = tmp_path_factory.mktemp("retention")
    env = {
        "RESTORE_DATA_DIR": str(data / "var"),
        "RESTORE_MODELS_DIRS": f'["{test_models}"]',
        "RESTORE_REGION_PX": "512",
        "RESTORE_RETENTION_DAYS": "1",
        "RESTORE_RETENTION_SWEEP_S": "1",
    }
    server = Server(env, data / "server.log").start()
    yield server
    server.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client(timeout=60) as client:
        yield client


@pytest.fixture
def store(server: Server) -> Iterator[Store]:
    """The server's database, to make records look old."""
    store = Store(Settings(data_dir=Path(server.env["RESTORE_DATA_DIR"])).resolved_database_url)
    yield store
    store.dispose()


def job_folder(server: Server, job_id: str) -> Path:
    return Path(server.env["RESTORE_DATA_DIR"]) / "jobs" / job_id


def completed_job(client: httpx.Client, slide_id: str) -> dict:
    created = client.post("/v1/jobs", json={"slide_id": slide_id, "model": "identity"})
    assert created.status_code == 202, created.text
    job = wait_for_job(client, created.json()["id"])
    assert job["state"] == "completed", job["error"]
    return job


def ome_tiff(client: httpx.Client, job_id: str) -> None:
    """Ask for the OME-TIFF export and wait until it is written."""
    deadline = time.time() + 120
    while client.get(f"/v1/jobs/{job_id}/output.ome.tiff").status_code == 202:
        assert time.time() < deadline, "the OME-TIFF export did not finish"
        time.sleep(0.5)


def test_deleting_a_finished_jobs_output_removes_every_file(
    server: Server, client: httpx.Client, pyramid_tiff: Path
) -> None:
    slide = upload(client, pyramid_tiff).json()
    job = completed_job(client, slide["id"])
    job_id = job["id"]
    ome_tiff(client, job_id)
    assert client.get(job["tiles_parquet_url"]).status_code == 200
    folder = job_folder(server, job_id)
    assert {"output.zarr", "output.ome.tiff", "tiles.csv", "tiles.parquet"} <= {
        p.name for p in folder.iterdir()
    }
    urls = [
        job["output_url"] + "/.zattrs",
        job["dzi_url"],
        job["tiles_url"],
        job["tiles_parquet_url"],
        job["report_url"],
        f"/v1/jobs/{job_id}/output.ome.tiff",
        f"/v1/jobs/{job_id}/output_files/0/0_0.jpeg",
    ]

    deleted = client.delete(f"/v1/jobs/{job_id}/output")

    assert deleted.status_code == 204, deleted.text
    assert not folder.exists()
    after = client.get(f"/v1/jobs/{job_id}").json()
    assert after["state"] == "completed" and after["metrics"] == job["metrics"]
    assert after["output_deleted_at"] == pytest.approx(time.time(), abs=60)
    for key in ("output_url", "dzi_url", "tiles_url", "tiles_parquet_url", "report_url"):
        assert after[key] is None, key
    for url in urls:
        gone = client.get(url)
        assert (gone.status_code, gone.json()["code"]) == (410, "gone"), url
    assert client.delete(f"/v1/jobs/{job_id}/output").status_code == 204
    assert client.delete("/v1/jobs/nope/output").status_code == 404


def test_a_running_jobs_output_cannot_be_deleted(
    server: Server, client: httpx.Client, pyramid_tiff: Path
) -> None:
    slide = upload(client, pyramid_tiff).json()
    job = start_slow_job(client, slide["id"])
    refused = client.delete(f"/v1/jobs/{job['id']}/output")
    assert refused.status_code == 409 and "running" in refused.json()["message"]
    assert job_folder(server, job["id"]).is_dir()
    assert client.delete(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled"
    assert client.delete(f"/v1/jobs/{job['id']}/output").status_code == 204
    assert not job_folder(server, job["id"]).exists()


def test_the_server_sweeps_what_is_older_than_the_retention(
    server: Server, client: httpx.Client, store: Store, pyramid_tiff: Path
) -> None:
    old_slide, recent_slide = (upload(client, pyramid_tiff).json() for _ in range(2))
    old_job = completed_job(client, recent_slide["id"])
    recent_job = completed_job(client, recent_slide["id"])
    running = start_slow_job(client, old_slide["id"])
    two_days_ago = time.time() - 2 * DAY_S
    store.update_job(old_job["id"], finished_at=two_days_ago)
    store.update_job(running["id"], created_at=two_days_ago)
    with store.engine.begin() as conn:  # an old upload that a running job still reads
        conn.execute(
            slides.update().where(slides.c.id == old_slide["id"]).values(created_at=two_days_ago)
        )

    deadline = time.time() + 30
    while client.get(f"/v1/jobs/{old_job['id']}").json()["output_deleted_at"] is None:
        assert time.time() < deadline, "the retention sweep did not delete the old output"
        time.sleep(0.5)

    assert not job_folder(server, old_job["id"]).exists()
    assert client.get(old_job["output_url"] + "/.zattrs").status_code == 410
    kept = client.get(f"/v1/jobs/{recent_job['id']}").json()
    assert kept["output_deleted_at"] is None
    assert client.get(kept["output_url"] + "/.zattrs").status_code == 200
    assert client.get(f"/v1/slides/{old_slide['id']}").status_code == 200  # a job reads it
    assert job_folder(server, running["id"]).is_dir()

    client.delete(f"/v1/jobs/{running['id']}")  # once the job has ended, its slide goes too
    deadline = time.time() + 30
    while client.get(f"/v1/slides/{old_slide['id']}").status_code != 404:
        assert time.time() < deadline, "the retention sweep did not delete the old slide"
        time.sleep(0.5)
    assert not (Path(server.env["RESTORE_DATA_DIR"]) / "slides" / old_slide["id"]).exists()
    assert client.get(f"/v1/slides/{recent_slide['id']}").status_code == 200
