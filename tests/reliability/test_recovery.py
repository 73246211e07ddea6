"""Embedded mode: the whole server is killed mid-job and started again on the same data."""

import time
from pathlib import Path

import numpy as np
import pytest

from tests.app.server import Server, start_slow_job, upload, wait_for_job
from tests.app.test_api import openslide_pixels, read_output
from tests.engine.fakes import whole_image_blur

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_job_completes_after_the_server_is_killed_and_restarted(
    tmp_path: Path, test_models: Path, pyramid_tiff: Path
) -> None:
    env = {
        "RESTORE_DATA_DIR": str(tmp_path / "var"),
        "RESTORE_MODELS_DIRS": f'["{test_models}"]',
        "RESTORE_REGION_PX": "512",
    }
    server = Server(env, tmp_path / "server.log").start()
    try:
        with server.client(timeout=60) as client:
            slide = upload(client, pyramid_tiff).json()
            job = start_slow_job(client, slide["id"])
            job_id = job["id"]
            while job["progress"]["regions_done"] < 1:
                time.sleep(0.05)  # 20 polls a second: within the key's rate limit
                job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "running"
        server.kill()
        server.start()
        with server.client(timeout=60) as client:
            done = wait_for_job(client, job_id, timeout_s=300)
        assert done["state"] == "completed", done["error"]
        assert done["progress"]["tiles_done"] == done["progress"]["tiles_total"]
        out = read_output(server, done)[0].astype(float)
        reference = whole_image_blur(openslide_pixels(pyramid_tiff))
        assert np.abs(out - reference)[1:-1, 1:-1].max() <= 1
    finally:
        server.stop()
