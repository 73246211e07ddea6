"""The viewer page in headless Chromium (Debian's chromium, driven by Playwright)."""

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from tests.app.server import Server, upload, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_viewer_shows_input_and_output_without_console_errors(
    embedded: Server, pyramid_tiff: Path, tmp_path: Path
) -> None:
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (apt-get install chromium)")
    with httpx.Client(base_url=embedded.url, timeout=60) as client:
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
