"""A cached reader whose read failed is reopened: one corrupt tile must not poison a slide."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.fixtures import tissue_image, write_pyramid_tiff
from workers.engine.reader_cache import forget_all, open_slide_cached
from workers.engine.readers import ReaderLimits

LIMITS = ReaderLimits()
TILE = 256
BAD_TILE = 3  # row 0, column 3: x 768 to 1024


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    forget_all()
    yield
    forget_all()


def _generic_tiff(path: Path, image: np.ndarray) -> Path:
    return write_pyramid_tiff(path, image, levels=1)  # JPEG tiles, read by OpenSlide


def _ome_tiff(path: Path, image: np.ndarray) -> Path:
    tifffile.imwrite(
        path, image, ome=True, photometric="rgb", tile=(TILE, TILE), compression="zlib"
    )
    return path


@pytest.mark.parametrize(
    ("write", "reader"), [(_generic_tiff, "openslide"), (_ome_tiff, "tifffile")]
)
def test_a_failed_read_drops_the_cached_reader(
    tmp_path: Path, write: Callable[[Path, np.ndarray], Path], reader: str
) -> None:
    path = write(tmp_path / "slide.tif", tissue_image(512, 1280))
    good = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages.first.dataoffsets[BAD_TILE]
    corrupt = bytearray(good)
    corrupt[offset : offset + 16] = bytes(16)  # no JPEG start marker, no zlib header
    path.write_bytes(bytes(corrupt))
    stat = path.stat()

    first = open_slide_cached(str(path), LIMITS)
    assert first.info.reader == reader
    first.read_region((0, 0), 0, (TILE, TILE))
    with pytest.raises(Exception):  # noqa: B017 - each library raises its own error
        first.read_region((BAD_TILE * TILE, 0), 0, (TILE, TILE))
    if reader == "openslide":  # its errors are sticky: even the good tile fails now
        with pytest.raises(Exception, match=r"(?i)jpeg|openslide"):
            first.read_region((0, 0), 0, (TILE, TILE))

    path.write_bytes(good)  # repaired in place: same file, size and modification time
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = open_slide_cached(str(path), LIMITS)
    assert again is not first
    pixels = again.read_region((BAD_TILE * TILE, 0), 0, (TILE, TILE))
    expected = tifffile.imread(path)[:TILE, BAD_TILE * TILE : (BAD_TILE + 1) * TILE]
    assert np.abs(pixels.astype(int) - expected).mean() < 1
    assert open_slide_cached(str(path), LIMITS) is again  # kept while it reads well
    print(f"{reader}: reader reopened after a failed read; the repaired tile reads back")


def test_a_replaced_file_is_reopened(tmp_path: Path) -> None:
    path = _ome_tiff(tmp_path / "slide.ome.tif", tissue_image(300, 400))
    first = open_slide_cached(str(path), LIMITS)
    replacement = _ome_tiff(tmp_path / "new.ome.tif", tissue_image(200, 500))
    os.replace(replacement, path)
    again = open_slide_cached(str(path), LIMITS)
    assert again is not first and (again.info.width, again.info.height) == (500, 200)
