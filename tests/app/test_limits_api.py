"""Resource limits through HTTP (issue 23, items 5 to 7): hostile small files fail alone, fast.

One server with a short sandbox time-out and a 64 MiB unpacking limit, so the slow and bomb
cases run in seconds. Each test prints what it measured.
"""

from __future__ import annotations

import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.app.server import Server, upload
from tests.engine.test_readers import bomb_tiff
from tests.fixtures import tissue_image

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MIB = 2**20
SANDBOX_TIMEOUT_S = 8
UNPACK_LIMIT = 64 * MIB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, test_models: Path) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("limits")
    env = {
        "RESTORE_DATA_DIR": str(data / "var"),
        "RESTORE_MODELS_DIRS": f'["{test_models}"]',
        "RESTORE_SANDBOX_TIMEOUT_S": str(SANDBOX_TIMEOUT_S),
        "RESTORE_MAX_UNPACKED_BYTES": str(UNPACK_LIMIT),
    }
    started = Server(env, data / "server.log").start()
    yield started
    started.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client(timeout=120) as client:
        yield client


def _timed_upload(client: httpx.Client, path: Path) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = upload(client, path)
    return response, time.perf_counter() - started


def test_a_tiff_declaring_65535_squared_pixels_in_175_kb_is_refused_fast(
    client: httpx.Client, tmp_path: Path
) -> None:
    response, seconds = _timed_upload(client, bomb_tiff(tmp_path / "bomb.svs"))
    print(f"175 KB TIFF declaring 65535 x 65535: {response.status_code} in {seconds:.2f} s")
    assert response.status_code == 413, response.text
    assert "decompression bomb" in response.json()["message"] and seconds < 5


def test_a_slow_upload_fails_alone_while_valid_uploads_beside_it_succeed(
    server: Server, tmp_path: Path, pyramid_tiff: Path
) -> None:
    """The slow file reads plausibly (860 pixels per byte) but takes minutes to thumbnail."""
    slow = bomb_tiff(tmp_path / "slow.tif", padding=5_000_000)
    with (
        server.client(timeout=120) as first,
        server.client(timeout=120) as second,
        ThreadPoolExecutor(1) as thread,
    ):
        pending = thread.submit(_timed_upload, first, slow)
        valid: list[tuple[int, float]] = []
        while not pending.done() or not valid:
            response, seconds = _timed_upload(second, pyramid_tiff)
            valid.append((response.status_code, seconds))
        slow_response, slow_seconds = pending.result()
        response, seconds = _timed_upload(second, pyramid_tiff)
        valid.append((response.status_code, seconds))
    times = [seconds for _, seconds in valid]
    print(
        f"slow upload: {slow_response.status_code} after {slow_seconds:.1f} s; "
        f"{len(valid)} valid uploads beside it: {sorted({s for s, _ in valid})}, "
        f"{min(times):.2f} to {max(times):.2f} s each"
    )
    assert slow_response.status_code == 422, slow_response.text
    assert f"longer than {SANDBOX_TIMEOUT_S}" in slow_response.json()["message"]
    assert all(status == 201 for status, _ in valid), valid


class DiskWatch:
    """The most bytes seen in new folders under a folder, sampled every few milliseconds."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak = folder, 0
        self._before = set(folder.iterdir())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> DiskWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            total = 0
            try:
                for folder in set(self.folder.iterdir()) - self._before:
                    total += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            except OSError:
                continue  # removed while counted: the request ended
            self.peak = max(self.peak, total)


def _zip_bomb(folder: Path) -> Path:
    path = folder / "bomb.zip"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle,
        bundle.open("case/slide.svs", "w", force_zip64=True) as member,
    ):
        for _ in range(4):
            member.write(bytes(64 * MIB))  # 256 MiB of zeros
    return path


def _zip_over_the_limit(folder: Path) -> Path:
    """80 MiB that compress 40-fold: no bomb, but more than the unpacking limit."""
    rng = np.random.default_rng(3)
    path = folder / "large.zip"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle,
        bundle.open("case/slide.svs", "w", force_zip64=True) as member,
    ):
        for _ in range(80 * 16):
            member.write(rng.bytes(1600) + bytes(64 * 1024 - 1600))
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [(_zip_bomb, "a zip bomb"), (_zip_over_the_limit, "past the limit of 67,108,864 bytes")],
    ids=["bomb", "over-the-limit"],
)
def test_a_zip_that_expands_too_far_is_refused_before_it_fills_the_disk(
    server: Server, client: httpx.Client, tmp_path: Path, make, reason: str
) -> None:
    archive = make(tmp_path)
    slides = Path(server.env["RESTORE_DATA_DIR"]) / "slides"
    slides.mkdir(parents=True, exist_ok=True)
    with DiskWatch(slides) as disk:
        response, seconds = _timed_upload(client, archive)
    print(
        f"{archive.stat().st_size:,} B zip: {response.status_code} in {seconds:.2f} s; "
        f"peak disk use under slides/ {disk.peak:,} B (limit {UNPACK_LIMIT:,} B)"
    )
    assert response.status_code == 413, response.text
    assert reason in response.json()["message"]
    assert disk.peak < UNPACK_LIMIT


def test_a_png_bomb_is_refused_clearly(client: httpx.Client, tmp_path: Path) -> None:
    Image.new("1", (10000, 10000)).save(tmp_path / "field.png")  # 12 KB, 300 MB as RGB
    response, seconds = _timed_upload(client, tmp_path / "field.png")
    print(f"12 KB PNG of 10000 x 10000: {response.status_code} in {seconds:.2f} s")
    assert response.status_code == 413, response.text
    message = response.json()["message"]
    assert "10000 x 10000 pixels" in message and "decompression bomb" in message


def test_a_tiff_with_a_zip_appended_is_read_as_the_tiff(
    client: httpx.Client, tmp_path: Path, pyramid_tiff: Path
) -> None:
    tifffile.imwrite(tmp_path / "other.tif", tissue_image(300, 400), photometric="rgb")
    with zipfile.ZipFile(tmp_path / "inner.zip", "w") as bundle:
        bundle.write(tmp_path / "other.tif", "case/other.tif")
    polyglot = tmp_path / "slide.svs"
    polyglot.write_bytes(pyramid_tiff.read_bytes() + (tmp_path / "inner.zip").read_bytes())
    assert zipfile.is_zipfile(polyglot)
    response = upload(client, polyglot)
    assert response.status_code == 201, response.text
    slide = response.json()
    print(f"TIFF + zip polyglot read as {slide['width']} x {slide['height']} ({slide['reader']})")
    assert (slide["width"], slide["height"]) == (1500, 1200)


def test_a_zip_with_data_appended_is_refused(
    client: httpx.Client, tmp_path: Path, pyramid_tiff: Path
) -> None:
    with zipfile.ZipFile(tmp_path / "case.zip", "w") as bundle:
        bundle.write(pyramid_tiff, "case/slide.tif")
    padded = tmp_path / "padded.zip"
    padded.write_bytes((tmp_path / "case.zip").read_bytes() + b"II*\x00" + bytes(2000))
    response = upload(client, padded)
    assert response.status_code == 422, response.text
    assert "data after the end of its zip archive" in response.json()["message"]
