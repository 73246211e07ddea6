"""The viewer page in headless Chromium (Debian's chromium, driven by Playwright)."""

from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from tests import fixtures
from tests.app.browser import CHROMIUM, PAGE, chromium_page, seed_key
from tests.app.server import Server, upload, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_viewer_shows_input_and_output_without_console_errors(
    embedded: Server, pyramid_tiff: Path, tmp_path: Path
) -> None:
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (apt-get install chromium)")
    with embedded.client(timeout=60) as client:
        slide = upload(client, pyramid_tiff).json()
        created = client.post("/v1/jobs", json={"slide_id": slide["id"], "model": "blur3x3"})
        job = wait_for_job(client, created.json()["id"])
    assert job["state"] == "completed"
    errors: list[str] = []
    tiles: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 700})
        seed_key(page, embedded.key)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("response", lambda r: tiles.append(r.url) if r.url.endswith(".jpeg") else None)
        page.goto(f"{embedded.url}{job['viewer_url']}")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        page.wait_for_load_state("networkidle")
        assert page.locator("#input canvas").count() == 1
        assert page.locator("#output canvas").count() == 1
        page.screenshot(path=str(tmp_path / "viewer.png"))
        centres = page.evaluate(
            "() => ['input', 'output'].map(k => window.viewers[k].viewport.getCenter())"
        )
        browser.close()
    assert centres[0] == centres[1], "the two viewers are not synchronised"
    shot = np.asarray(Image.open(tmp_path / "viewer.png").convert("L"), dtype=float)
    left, right = shot[100:500, 50:550], shot[100:500, 650:1150]
    assert left.mean() > 60 and right.mean() > 60, "a pane shows no image"
    assert not errors, errors
    assert any("/v1/slides/" in url for url in tiles), "no input tiles were drawn"
    assert any("/v1/jobs/" in url for url in tiles), "no output tiles were drawn"


def test_api_docs_render_offline_with_no_external_request(embedded: Server, tmp_path: Path) -> None:
    """An air-gapped hospital: /docs must load every asset from this server."""
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (apt-get install chromium)")
    html = httpx.get(f"{embedded.url}/docs", timeout=30).text
    assert "http://" not in html and "https://" not in html
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("request", lambda r: requested.append(r.url))
        page.route(  # anything not from this server fails, as it would offline
            "**/*",
            lambda route: (
                route.continue_()
                if route.request.url.startswith(embedded.url)
                or route.request.url.startswith("data:")
                else route.abort()
            ),
        )
        page.goto(f"{embedded.url}/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
        page.wait_for_selector('.opblock-summary-path[data-path="/v1/jobs"]', timeout=30_000)
        page.screenshot(path=str(tmp_path / "docs.png"))
        browser.close()
    external = [u for u in requested if not u.startswith((embedded.url, "data:"))]
    assert not external, external
    assert any(u.endswith("/openapi.json") for u in requested)


MICRO = "\u00b5"


@pytest.fixture(scope="module")
def upscaled(embedded: Server, pyramid_tiff: Path) -> dict:
    """A completed x2 job on part of a 0.5 um/px slide: its output has 0.25 um pixels."""
    with embedded.client(timeout=60) as client:
        slide = upload(client, pyramid_tiff, "upscaled.tif").json()
        body = {"slide_id": slide["id"], "model": "nearest-x2", "region": [0, 0, 768, 512]}
        created = client.post("/v1/jobs", json=body)
        assert created.status_code == 202, created.text
        job = wait_for_job(client, created.json()["id"])
    assert job["state"] == "completed", job["error"]
    return {**job, "slide": slide}


def test_start_page_shows_the_jobs_and_the_start_form_at_the_top(
    embedded: Server, upscaled: dict, tmp_path: Path
) -> None:
    errors: list[str] = []
    with chromium_page(errors, embedded.key) as page:
        page.goto(f"{embedded.url}/")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        page.screenshot(path=str(tmp_path / "start.png"))
        print(f"screenshot: {tmp_path / 'start.png'}")
        assert page.locator("#panes").is_hidden(), "the empty viewer panes cover the start page"
        job_box = page.locator("#jobs tr").nth(1).bounding_box()
        assert job_box is not None and job_box["y"] + job_box["height"] <= PAGE["height"]
        form_box = page.locator("#start-form").bounding_box(timeout=5_000)
        assert form_box is not None and form_box["y"] + form_box["height"] <= PAGE["height"]
        job_text = page.locator("#jobs tr", has_text=upscaled["id"][:8]).inner_text()
        slides = page.locator("#start-slide option").all_inner_texts()
        models = page.eval_on_selector_all("#start-model option", "o => o.map(e => e.value)")
    assert not errors, errors
    assert upscaled["id"][:8] in job_text and "upscaled.tif" in job_text
    assert any(s.startswith("upscaled.tif (1500 \u00d7 1200, 0.5 ") for s in slides), slides
    assert models[0] == "auto" and {"blur3x3", "nearest-x2", "identity"} <= set(models)


def test_a_job_started_from_the_form_runs_to_completion(
    embedded: Server, upscaled: dict, tmp_path: Path
) -> None:
    errors: list[str] = []
    with chromium_page(errors, embedded.key) as page:
        page.goto(f"{embedded.url}/")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        page.select_option("#start-slide", upscaled["slide_id"])
        page.select_option("#start-model", "blur3x3")
        fields = page.locator("#start-region input")
        fields.nth(0).fill("0")
        page.click("#start-button")
        half = page.locator("#start-message.error").inner_text()
        for index, value in enumerate(["0", "0", "99999", "256"]):
            fields.nth(index).fill(value)
        page.click("#start-button")
        page.wait_for_selector("#start-message.error:has-text('outside')", timeout=10_000)
        refused = page.locator("#start-message").inner_text()
        page.screenshot(path=str(tmp_path / "refused.png"))
        fields.nth(0).fill("600")
        fields.nth(1).fill("300")
        fields.nth(2).fill("384")
        page.click("#start-button")
        page.wait_for_url("**/?job=*", timeout=10_000)
        page.wait_for_selector("body[data-ready=true]", timeout=120_000)
        page.screenshot(path=str(tmp_path / "started.png"))
        print(f"screenshots: {tmp_path}")
        job_id = page.url.split("job=")[1]
    assert "all four" in half
    assert "region [0, 0, 99999, 256] lies outside the slide" in refused, refused
    assert refused.endswith("(invalid_input)"), refused
    # the browser logs the refused POST; nothing else may fail
    assert all("status of 422" in e for e in errors), errors
    job = httpx.get(f"{embedded.url}/v1/jobs/{job_id}", headers=embedded.headers, timeout=30).json()
    assert job["state"] == "completed" and job["model"] == "blur3x3"
    assert job["slide_id"] == upscaled["slide_id"] and job["params"]["area"] == [600, 300, 384, 256]


def _scale_bar(page: Page, pane: str) -> tuple[float, float]:
    """(the bar's length in um from its label, its width in screen pixels) on ``pane``."""
    label = page.locator(f".pane:has(#{pane}) .scale-label").inner_text()
    number, unit = label.split()
    assert unit in (f"{MICRO}m", "mm"), label
    box = page.locator(f".pane:has(#{pane}) .scale-line").bounding_box()
    assert box is not None
    return float(number) * (1000 if unit == "mm" else 1), box["width"]


SCREEN_PX_PER_OUTPUT_PX = (
    "() => { const v = window.viewers.output;"
    " return v.world.getItemAt(0).viewportToImageZoom(v.viewport.getZoom(true)); }"
)


def test_the_scale_bar_shows_microns_and_follows_the_zoom(
    embedded: Server, upscaled: dict, tmp_path: Path
) -> None:
    output_um = upscaled["slide"]["mpp_x"] / upscaled["params"]["scale"]
    assert output_um == pytest.approx(0.25, rel=0.01)
    errors: list[str] = []
    with chromium_page(errors, embedded.key) as page:
        page.goto(f"{embedded.url}{upscaled['viewer_url']}")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(tmp_path / "scale-home.png"))
        home = _scale_bar(page, "output"), _scale_bar(page, "input")
        home_zoom = page.evaluate(SCREEN_PX_PER_OUTPUT_PX)
        output_label = page.locator("#output-label").inner_text()
        bar_label = page.locator(".pane:has(#output) .scale-label").inner_text()
        page.evaluate("() => window.viewers.output.viewport.zoomBy(5, undefined, true)")
        page.wait_for_function(
            "label => document.querySelector('.pane:has(#output) .scale-label')"
            ".textContent !== label",
            arg=bar_label,
            timeout=10_000,
        )
        page.wait_for_timeout(500)  # the input pane follows
        page.screenshot(path=str(tmp_path / "scale-zoomed.png"))
        print(f"screenshots: {tmp_path}")
        zoomed = _scale_bar(page, "output"), _scale_bar(page, "input")
        zoomed_zoom = page.evaluate(SCREEN_PX_PER_OUTPUT_PX)
    assert not errors, errors
    assert f"0.25 {MICRO}m/px" in output_label
    for (um, width_px), zoom in ((home[0], home_zoom), (zoomed[0], zoomed_zoom)):
        assert width_px == pytest.approx(um / output_um * zoom, rel=0.03), (um, width_px, zoom)
        assert 40 <= width_px <= 160
    assert zoomed[0][0] < home[0][0], "zooming in did not shorten the bar's length"
    assert home[1][0] == home[0][0] and zoomed[1][0] == zoomed[0][0], "the panes disagree"


def test_a_job_whose_slide_was_deleted_shows_its_output_alone(
    embedded: Server, pyramid_tiff: Path, tmp_path: Path
) -> None:
    with embedded.client(timeout=60) as client:
        slide = upload(client, pyramid_tiff, "deleted.tif").json()
        body = {"slide_id": slide["id"], "model": "blur3x3", "region": [256, 256, 768, 512]}
        job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"])
        assert job["state"] == "completed", job["error"]
        assert client.delete(f"/v1/slides/{slide['id']}").status_code == 204
        after = client.get(f"/v1/jobs/{job['id']}").json()
        listed = next(j for j in client.get("/v1/jobs").json() if j["id"] == job["id"])
    assert after["input_dzi_url"] is None and listed["input_dzi_url"] is None
    errors: list[str] = []
    requested: list[str] = []
    with chromium_page(errors, embedded.key) as page:
        page.on("request", lambda r: requested.append(r.url))
        page.goto(f"{embedded.url}{job['viewer_url']}")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(tmp_path / "deleted.png"))
        print(f"screenshot: {tmp_path / 'deleted.png'}")
        note = page.locator("#note").inner_text() if page.locator("#note").is_visible() else ""
        input_hidden = page.locator("#input-pane").is_hidden()
        output_box = page.locator("#output").bounding_box()
        scale_label = page.locator(".pane:has(#output) .scale-label").inner_text()
        home_page = page.goto(f"{embedded.url}/")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        row = page.locator("#jobs tr", has_text=job["id"][:8]).inner_text()
    assert not errors, errors
    assert home_page is not None and home_page.ok
    assert "slide was deleted" in note and input_hidden
    assert output_box is not None and output_box["width"] > 1100, "the output is not alone"
    assert not any(f"/v1/slides/{slide['id']}" in url for url in requested)
    assert scale_label.endswith(f"{MICRO}m"), "the output keeps its pixel size"
    assert "(deleted)" in row
    shot = np.asarray(Image.open(tmp_path / "deleted.png").convert("L"), dtype=float)
    assert shot[100:600, 200:1000].mean() > 60, "the output pane shows no image"


def test_no_scale_bar_where_the_pixel_size_is_unknown(embedded: Server, tmp_path: Path) -> None:
    path = fixtures.write_pyramid_tiff(  # 72 dpi: an image editor's default, not a pixel size
        tmp_path / "no-mpp.tif", fixtures.tissue_image(512, 768), mpp=25400 / 72
    )
    with embedded.client(timeout=60) as client:
        slide = upload(client, path).json()
        body = {"slide_id": slide["id"], "model": "blur3x3"}
        job = wait_for_job(client, client.post("/v1/jobs", json=body).json()["id"])
    assert slide["mpp_x"] is None and job["state"] == "completed", job["error"]
    errors: list[str] = []
    with chromium_page(errors, embedded.key) as page:
        page.goto(f"{embedded.url}{job['viewer_url']}")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        bars = page.locator(".scalebar").count()
        label = page.locator("#output-label").inner_text()
    assert not errors, errors
    assert bars == 0 and label == "output (blur3x3)"


def test_without_a_key_the_start_page_asks_for_one(embedded: Server) -> None:
    errors: list[str] = []
    with chromium_page(errors) as page:
        page.goto(f"{embedded.url}/")
        page.wait_for_selector("#status:has-text('401')", timeout=30_000)
        asked = page.locator("#status").inner_text()
        before = page.locator("#key-state").inner_text()
        page.fill("#api-key", embedded.key)
        page.click("#key-form button")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        after = page.locator("#key-state").inner_text()
        jobs = page.locator("#jobs tr").count()
    assert "paste a valid API key" in asked and before == "no key set"
    assert after == f"key {embedded.key.split('_')[1]} in use" and jobs > 1
    assert all("401" in e for e in errors), errors  # the browser logs the refused requests
