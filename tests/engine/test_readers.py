import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.fixtures import tissue_image
from workers.engine.archives import unpack_slide_zip
from workers.engine.readers import ReaderLimits, open_slide
from workers.errors import InvalidInput, TooLarge, UnsupportedFormat
from workers.sandbox import inspect_upload


def test_pyramidal_tiff_opens_with_openslide(pyramid_tiff: Path) -> None:
    reader = open_slide(pyramid_tiff)
    info = reader.info
    assert (info.width, info.height, info.level_count) == (1500, 1200, 3)
    assert info.reader == "openslide" and info.mpp_x == pytest.approx(0.5)
    assert reader.read_region((100, 100), 1, (64, 32)).shape == (32, 64, 3)


def test_real_svs_reports_vendor_and_mpp(small_svs: Path) -> None:
    info = open_slide(small_svs).info
    assert info.vendor == "aperio" and info.mpp_x == pytest.approx(0.499)
    assert (info.width, info.height) == (2220, 2967)


def test_ome_tiff_opens_with_tifffile(tmp_path: Path) -> None:
    image = tissue_image(300, 400)
    path = tmp_path / "x.ome.tif"
    tifffile.imwrite(
        path,
        image,
        ome=True,
        photometric="rgb",
        tile=(128, 128),
        metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25},
    )
    reader = open_slide(path)
    assert reader.info.reader == "tifffile" and reader.info.vendor == "ome-tiff"
    assert reader.info.mpp_x == pytest.approx(0.25)
    assert np.array_equal(reader.read_region((10, 20), 0, (50, 40)), image[20:60, 10:60])


def test_sixteen_bit_single_channel_tiff_becomes_rgb(tmp_path: Path) -> None:
    image = np.arange(200 * 100, dtype=np.uint16).reshape(100, 200) % 4000
    tifffile.imwrite(tmp_path / "g.tif", image)
    region = open_slide(tmp_path / "g.tif").read_region((0, 0), 0, (200, 100))
    assert region.shape == (100, 200, 3) and region.dtype == np.uint8 and region.max() >= 250


def test_png_opens_with_pillow(tmp_path: Path) -> None:
    image = tissue_image(120, 160)
    Image.fromarray(image).save(tmp_path / "x.png")
    reader = open_slide(tmp_path / "x.png")
    assert reader.info.reader == "pillow"
    assert np.array_equal(reader.read_region((0, 0), 0, (160, 120)), image)


def test_unsupported_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a slide")
    with pytest.raises(UnsupportedFormat):
        open_slide(tmp_path / "notes.txt")


def test_truncated_tiff_is_refused_by_the_inspection(pyramid_tiff: Path, tmp_path: Path) -> None:
    data = pyramid_tiff.read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises((InvalidInput, UnsupportedFormat)):
        inspect_upload(str(tmp_path / "cut.tif"), str(tmp_path), (2**32, 10**8), 10**9)


def huge_declared_tiff(path: Path) -> Path:
    """A tiny file whose header declares 70000 x 70000 pixels."""
    tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with tifffile.TiffFile(path) as tif:
        offsets = [tif.pages[0].tags[name].valueoffset for name in ("ImageWidth", "ImageLength")]
    with path.open("r+b") as handle:
        for offset in offsets:
            handle.seek(offset)
            handle.write(struct.pack("<I", 70000))
    return path


def test_slide_declaring_too_many_pixels_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TooLarge, match="70000 x 70000"):
        open_slide(huge_declared_tiff(tmp_path / "huge.tif"))


def test_plain_image_limit(tmp_path: Path) -> None:
    Image.new("RGB", (300, 300)).save(tmp_path / "x.png")
    with pytest.raises(TooLarge):
        open_slide(tmp_path / "x.png", ReaderLimits(max_plain_image_pixels=10_000))


def test_mrxs_style_zip_is_unpacked_safely(tmp_path: Path, pyramid_tiff: Path) -> None:
    archive = tmp_path / "slide.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(pyramid_tiff, "case/slide.tif")
    found = unpack_slide_zip(archive, tmp_path / "out", max_bytes=10**8)
    assert found.name == "slide.tif" and open_slide(found).info.width == 1500
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("../../escape.mrxs", b"x")
    with pytest.raises(InvalidInput, match="escapes"):
        unpack_slide_zip(evil, tmp_path / "out2", max_bytes=10**8)


@pytest.mark.parametrize(("axes", "shape"), [("ZYX", (3, 64, 80)), ("TYXS", (2, 64, 80, 3))])
def test_a_tiff_stack_is_refused_with_a_pointer_to_sequences(
    tmp_path: Path, axes: str, shape: tuple[int, ...]
) -> None:
    path = tmp_path / "stack.ome.tif"
    pixels = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    tifffile.imwrite(path, pixels, ome=True, metadata={"axes": axes})
    with pytest.raises(InvalidInput, match=r"stack of \d .* POST /v1/sequences"):
        open_slide(path)
    plain = tmp_path / "pages.tif"
    with tifffile.TiffWriter(plain) as tif:
        for page in pixels:
            tif.write(page, photometric="rgb" if page.ndim == 3 else "minisblack")
    with pytest.raises(InvalidInput, match="POST /v1/sequences"):
        open_slide(plain)


def bomb_tiff(path: Path, side: int = 65535, tile: int | None = None, padding: int = 0) -> Path:
    """A deflate RGB TIFF declaring side x side pixels whose strips (or tiles) all point at one
    tiny compressed block: 65535 x 65535 in 175 KB decodes to 12.9 GB, and making its
    thumbnail took tifffile over two minutes. ``padding`` appends bytes to look denser.
    """
    rows = tile or 3  # 65535 = 3 x 21845: every strip decodes to exactly its rows
    block = zlib.compress(bytes(rows * (tile or side) * 3), 9)
    count = -(-side // rows) * (-(-side // tile) if tile else 1)
    arrays_at = 8 + len(block) + 6
    ifd_at = arrays_at + 8 * count
    layout = [(322, 4, 1, tile), (323, 4, 1, tile)] if tile else [(278, 4, 1, rows)]
    tags = sorted(
        [
            (256, 4, 1, side),
            (257, 4, 1, side),
            (258, 3, 3, 8 + len(block)),
            (259, 3, 1, 8),
            (262, 3, 1, 2),
            (273 if not tile else 324, 4, count, arrays_at),
            (277, 3, 1, 3),
            (279 if not tile else 325, 4, count, arrays_at + 4 * count),
            *layout,
        ]
    )
    path.write_bytes(
        b"II*\x00"
        + struct.pack("<I", ifd_at)
        + block
        + struct.pack("<3H", 8, 8, 8)
        + struct.pack(f"<{count}I", *[8] * count)
        + struct.pack(f"<{count}I", *[len(block)] * count)
        + struct.pack("<H", len(tags))
        + b"".join(struct.pack("<HHII", *tag) for tag in tags)
        + bytes(4 + padding)
    )
    return path


@pytest.mark.parametrize(("tile", "reader"), [(None, "tifffile"), (512, "openslide")])
def test_a_tiff_declaring_far_more_pixels_than_its_bytes_is_refused_fast(
    tmp_path: Path, tile: int | None, reader: str
) -> None:
    path = bomb_tiff(tmp_path / "bomb.tif", tile=tile)
    started = time.perf_counter()
    with pytest.raises(TooLarge, match=r"65535 x 65535 pixels in [\d,]+ bytes .* decompression"):
        open_slide(path)
    seconds = time.perf_counter() - started
    print(f"{reader} bomb of {path.stat().st_size:,} B refused in {seconds:.3f} s")
    assert seconds < 2
    dense = bomb_tiff(tmp_path / "dense.tif", tile=tile, padding=5_000_000)
    assert open_slide(dense).info.reader == reader  # 860 pixels per byte: plausible


def _png_header_declaring(path: Path, width: int, height: int) -> Path:
    Image.new("1", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_a_png_bomb_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    Image.new("1", (10000, 10000)).save(tmp_path / "bomb.png")  # 12 KB for 100 megapixels
    started = time.perf_counter()
    with pytest.raises(TooLarge, match=r"10000 x 10000 pixels in .* a decompression bomb"):
        open_slide(tmp_path / "bomb.png")
    seconds = time.perf_counter() - started
    size = (tmp_path / "bomb.png").stat().st_size
    print(f"PNG bomb of {size:,} B (300 MB as RGB) refused in {seconds:.3f} s")
    assert seconds < 1


@pytest.mark.parametrize("earlier_limit", [None, 89_478_485])
def test_pillow_guards_plain_images_at_the_configured_limit(
    tmp_path: Path, earlier_limit: int | None
) -> None:
    Image.MAX_IMAGE_PIXELS = earlier_limit  # what an earlier reader (or Pillow) left
    for side in (12_000, 30_000):  # over the limit; over twice the limit
        path = _png_header_declaring(tmp_path / f"{side}.png", side, side)
        with pytest.raises(TooLarge, match="more than the limit of 100,000,000 pixels"):
            open_slide(path)


def test_a_plain_image_is_converted_without_whole_image_copies(tmp_path: Path) -> None:
    """A 25-megapixel RGBA PNG (100 MB decoded) peaked at 3.4 times that; now under 2.2."""
    pixels = np.full((5000, 5000, 4), 255, np.uint8)
    pixels[::7, ::5] = np.random.default_rng(0).integers(0, 255, (715, 1000, 4))
    Image.fromarray(pixels, "RGBA").save(tmp_path / "field.png")
    script = (  # VmHWM: this process's peak resident memory in KiB (ru_maxrss survives exec)
        "import re, sys; from pathlib import Path;"
        "from workers.engine.readers import open_slide;"
        "peak = lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]);"
        "before = peak(); open_slide(Path(sys.argv[1])); print(peak() - before)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "field.png")],
        capture_output=True,
        text=True,
        check=True,
    )
    peak = int(done.stdout) * 1024 / pixels.nbytes
    print(f"peak memory while reading: {peak:.2f} x the decoded RGBA image")
    assert peak < 2.2


def test_a_tiff_declaring_huge_tiles_is_refused_before_openslide_allocates_one(
    tmp_path: Path, pyramid_tiff: Path
) -> None:
    """OpenSlide's failed 16 GiB tile allocation aborted the process (found by the corpus)."""
    path = tmp_path / "tiles.tif"
    data = bytearray(pyramid_tiff.read_bytes())
    with tifffile.TiffFile(pyramid_tiff) as tif:
        for tag in ("TileWidth", "TileLength"):
            entry = tif.pages.first.tags[tag]
            assert entry.dtype == 4, entry.dtype  # LONG: room for 65536
            struct.pack_into("<I", data, entry.valueoffset, 65536)
    path.write_bytes(bytes(data))
    with pytest.raises(TooLarge, match="tiles of 65536 x 65536 pixels"):
        open_slide(path)
