"""``auto`` through HTTP: default model, metrics, tile table, blur map, viewer overlay."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from tests import fixtures
from tests.app.browser import seed_key
from tests.app.server import Server, upload, wait_for_job, zarr_nodes
from workers.settings import ZOO_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, test_models: Path) -> Iterator[Server]:
    """The embedded server with the shipped models (and the test models)."""
    data = tmp_path_factory.mktemp("auto-api")
    env = {
        "RESTORE_DATA_DIR": str(data / "var"),
        "RESTORE_MODELS_DIRS": f'["{ZOO_DIR}", "{test_models}"]',
    }
    server = Server(env, data / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def finished(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("patched")
    patched = fixtures.patched_slide()
    fixtures.write_pyramid_tiff(folder / "patched.tif", patched.pixels)
    # the reference: a sharp rescan of the same tissue, placed 9 px right and 5 px down
    rescan = np.pad(patched.sharp, ((5, 0), (9, 0), (0, 0)), "symmetric")[:2048, :3072]
    fixtures.write_pyramid_tiff(folder / "rescan.tif", rescan)
    with server.client(timeout=60) as client:
        slide = upload(client, folder / "patched.tif").json()
        reference = upload(client, folder / "rescan.tif").json()
        body = {"slide_id": slide["id"], "reference_slide_id": reference["id"]}
        created = client.post("/v1/jobs", json=body)
        assert created.status_code == 202, created.text
        assert created.json()["model"] == "auto"
        return wait_for_job(client, created.json()["id"], timeout_s=300)


def test_an_auto_job_reports_what_it_found_and_did(server: Server, finished: dict) -> None:
    assert finished["state"] == "completed", finished["error"]
    metrics = finished["metrics"]
    assert metrics["qc"]["rescan_recommended"] is True
    assert 0.1 < metrics["qc"]["blurred_share"] < 0.3
    assert metrics["tiles"]["by_class"]["in_focus"] > metrics["tiles"]["by_class"]["defocus"] > 0
    assert metrics["sharpness"]["after"]["tenengrad"] > metrics["sharpness"]["before"]["tenengrad"]
    assert metrics["timings"]["mpx_per_s"] > 0
    assert finished["progress"]["blocks_done"] == finished["progress"]["blocks_total"] > 0
    reference = metrics["reference"]
    print(f"against the rescan: input {reference['input']}, output {reference['output']}")
    assert reference["shift_px"] == pytest.approx([9, 5], abs=0.3)
    for figure in ("psnr_db", "ssim", "pcc"):
        assert reference["output"][figure] > reference["input"][figure], figure
    with server.client(timeout=60) as client:
        table = client.get(finished["tiles_url"])
        assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(table.text)))
        assert len(rows) == metrics["tiles"]["total"]
        assert {r["model"] for r in rows} >= {"", "deblur-defocus", "deblur-motion"}
        parquet = client.get(finished["tiles_parquet_url"])
        assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1"
        from pyarrow import parquet as pq

        typed = pq.read_table(io.BytesIO(parquet.content))
        assert (
            typed.num_rows == len(rows) and str(typed.schema.field("confidence").type) == "double"
        )
        assert typed.column("tile").to_pylist() == [int(r["tile"]) for r in rows]
        png = client.get(finished["blur_map_url"])
        assert png.status_code == 200
        cells = np.asarray(Image.open(io.BytesIO(png.content)))
        assert cells.shape == (64, 96, 4) and cells[..., 3].max() > 0  # 8 px per cell
        labels = client.get(f"{finished['output_url']}/labels/.zattrs").json()
        assert labels["labels"] == ["blur", "restored"]
    nodes = zarr_nodes(server, finished["output_url"])
    names = {n.metadata.get("name") for n in nodes}
    assert {"blur", "restored"} <= names  # read over HTTP by ome-zarr-py


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": ["sr-x4", "deblur-defocus"]}, "only the last model"),
        ({"model": ["deblur-motion", "deblur-nothing"]}, "not installed"),
        ({"model": []}, "non-empty"),
        ({"model": ["auto", "sr-x4"]}, "cannot be part of a chain"),
        ({"model": "blur-classifier"}, "not a generator"),
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"model": "sr-x4", "reference_slide_id": "SELF"}, "keep the image size"),
    ],
)
def test_bad_model_requests_get_422(server: Server, finished: dict, body, message) -> None:
    with server.client(timeout=60) as client:
        if body.get("reference_slide_id") == "SELF":
            body = {**body, "reference_slide_id": finished["slide_id"]}
        response = client.post("/v1/jobs", json={"slide_id": finished["slide_id"], **body})
    assert response.status_code == 422
    assert message in response.text


def test_a_chain_runs_both_models(server: Server, finished: dict) -> None:
    body = {
        "slide_id": finished["slide_id"],
        "model": ["deblur-motion", "deblur-defocus"],
        "region": [256, 256, 640, 512],
    }
    with server.client(timeout=60) as client:
        created = client.post("/v1/jobs", json=body).json()
        job = wait_for_job(client, created["id"], timeout_s=300)
    assert job["state"] == "completed", job["error"]
    assert job["model"] == ["deblur-motion", "deblur-defocus"]
    assert set(job["metrics"]["tiles"]["by_model"]) == {"deblur-motion+deblur-defocus"}


def test_viewer_overlays_the_blur_map_with_a_legend(
    server: Server, finished: dict, tmp_path: Path
) -> None:
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (apt-get install chromium)")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1200, "height": 700})
        seed_key(page, server.key)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}{finished['viewer_url']}")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        page.wait_for_function("() => window.blurOverlay !== undefined", timeout=30_000)
        page.wait_for_load_state("networkidle")
        legend = page.locator("#legend").inner_text()
        page.screenshot(path=str(tmp_path / "overlay-on.png"))
        shutil.copy(tmp_path / "overlay-on.png", "/tmp/overlay-on.png")
        page.locator("#blur-toggle").uncheck()
        page.wait_for_timeout(500)
        page.screenshot(path=str(tmp_path / "overlay-off.png"))
        browser.close()
    assert not errors, errors
    assert "defocus" in legend and "motion" in legend and "rescan recommended" in legend
    on = np.asarray(Image.open(tmp_path / "overlay-on.png").convert("RGB"), dtype=float)
    off = np.asarray(Image.open(tmp_path / "overlay-off.png").convert("RGB"), dtype=float)
    right = (slice(80, 680), slice(610, 1190))  # the output pane
    tinted = (np.abs(on[right] - off[right]).max(axis=2) > 20).mean()
    assert 0.03 < tinted < 0.4, f"the blur map tints {tinted:.0%} of the output pane"


def test_report_is_one_self_contained_page(server: Server, finished: dict, tmp_path: Path) -> None:
    with server.client(timeout=60) as client:
        response = client.get(finished["report_url"])
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "Rescan recommended" in page and "Largest blurred areas" in page
    assert page.count("data:image/png;base64,") == 3
    assert "http://" not in page and "https://" not in page and "<script" not in page
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        view = browser.new_page(viewport={"width": 1200, "height": 1000})
        view.set_extra_http_headers(server.headers)  # the report is read with a key
        view.goto(f"{server.url}{finished['report_url']}")
        sizes = view.evaluate("() => [...document.images].map(i => i.naturalWidth)")
        view.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        shutil.copy(tmp_path / "report.png", "/tmp/report.png")
        browser.close()
    assert len(sizes) == 3 and min(sizes) > 200, "a chart did not render"


def test_an_evaluation_job_proves_restoration_on_a_sharp_slide(
    server: Server, finished: dict, tmp_path: Path
) -> None:
    path = tmp_path / "sharp.tif"
    fixtures.write_pyramid_tiff(path, fixtures.patched_slide().sharp[:1024, :1536])
    with server.client(timeout=60) as client:
        slide = upload(client, path).json()
        body = {"slide_id": slide["id"], "evaluate": {"degradation": "defocus", "radius_px": 4}}
        created = client.post("/v1/jobs", json=body)
        assert created.status_code == 202, created.text
        job = wait_for_job(client, created.json()["id"], timeout_s=300)
        bad = client.post("/v1/jobs", json={**body, "evaluate": {"degradation": "tilt"}})
        extra = client.post(
            "/v1/jobs", json={**body, "evaluate": {"degradation": "motion", "typo": 1}}
        )
    assert job["state"] == "completed", job["error"]
    assert bad.status_code == 422 and extra.status_code == 422
    evaluation = job["metrics"]["evaluation"]
    print(f"evaluation, whole area: {evaluation['slide']}")
    print(f"evaluation, sample of {evaluation['sample']['tiles']} tiles: {evaluation['sample']}")
    assert job["metrics"]["qc"]["share"]["defocus"] > 0.8  # the degraded slide reads as defocused
    for figure in ("psnr_db", "ssim", "pcc"):
        assert evaluation["slide"]["output"][figure] > evaluation["slide"]["input"][figure]
    sample = evaluation["sample"]
    assert sample["tiles"] >= 4
    assert sample["output"]["ssim"] > sample["input"]["ssim"]
    assert {"richardson_lucy", "wiener"} <= set(sample)
