"""Headless Chromium pages for viewer tests (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAGE = {"width": 1200, "height": 700}


def seed_key(page: Page, key: str) -> None:
    """Let the viewer find ``key`` in its storage, as if it had been pasted on the start page."""
    page.add_init_script(f"localStorage.setItem('slide-restore.api-key', {json.dumps(key)})")


@contextmanager
def chromium_page(errors: list[str], key: str | None = None) -> Iterator[Page]:
    """A 1200 x 700 page in headless Chromium; console errors and exceptions go to ``errors``.

    With ``key``, the viewer finds that API key in its storage, as if pasted on the start page.
    """
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport=PAGE)
        if key is not None:
            seed_key(page, key)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page
        finally:
            browser.close()
