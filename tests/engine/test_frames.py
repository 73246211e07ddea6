import io
import random
import struct
import zipfile
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage import data

from workers.engine.frames import FrameLimits, frame_count, ingest_frames, read_frame
from workers.errors import InvalidInput, NotFound, TooLarge, UnsupportedFormat

HEIGHT, WIDTH = 96, 128


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Ten 96 x 128 RGB crops of real tissue, each a different place on the slide."""
    tissue = data.immunohistochemistry()
    return [tissue[20 * k : 20 * k + HEIGHT, 30 * k : 30 * k + WIDTH].copy() for k in range(10)]


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_zip(path: Path, entries: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for name, payload in entries.items():
            info = zipfile.ZipInfo(name)
            if name in symlinks:
                info.external_attr = 0o120777 << 16
            bundle.writestr(info, payload)
    return path


def write_video(path: Path, frames: list[np.ndarray], codec: str, pix_fmt: str) -> Path:
    options = {"crf": "10"} if codec == "libx264" else {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=5, options=options)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def stored(store: Path) -> list[np.ndarray]:
    return [read_frame(store, k) for k in range(frame_count(store))]


def test_zip_frames_come_back_bit_identical_in_natural_order(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    names = [f"scan/f{k + 1}.png" for k in range(10)]
    random.Random(0).shuffle(order := list(range(10)))
    entries = {names[k]: png_bytes(frames[k]) for k in order}
    entries |= {"__MACOSX/scan/._f1.png": b"junk", "scan/.DS_Store": b"junk"}
    store = tmp_path / "frames.zarr"
    info = ingest_frames(write_zip(tmp_path / "scan.zip", entries), store)
    assert (info.count, info.width, info.height, info.channels) == (10, WIDTH, HEIGHT, 3)
    assert (info.container, info.source_dtype, info.rate_hz) == ("zip", "uint8", None)
    assert all(np.array_equal(got, want) for got, want in zip(stored(store), frames, strict=True))


@pytest.mark.parametrize("layout", ["shaped", "plain", "ome"])
def test_tiff_pages_come_back_bit_identical(
    tmp_path: Path, frames: list[np.ndarray], layout: str
) -> None:
    path, stack = tmp_path / "scan.tif", np.stack(frames[:6])
    if layout == "plain":
        with tifffile.TiffWriter(path) as tif:
            for pixels in stack:
                tif.write(pixels, photometric="rgb", metadata=None)
    else:
        metadata = {"axes": "TYXS"} if layout == "ome" else {}
        tifffile.imwrite(path, stack, photometric="rgb", ome=layout == "ome", metadata=metadata)
    info = ingest_frames(path, tmp_path / "frames.zarr")
    assert (info.container, info.count, info.channels) == ("tiff", 6, 3)
    assert np.array_equal(np.stack(stored(tmp_path / "frames.zarr")), stack)


def test_sixteen_bit_gray_is_scaled_by_the_sequence_maximum(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    gray = np.stack([f.mean(axis=2).astype(np.uint8) for f in frames[:6]])
    gray[3, 0, 0] = 255  # the maximum sits in one frame only
    tifffile.imwrite(tmp_path / "gray16.tif", gray.astype(np.uint16) * 257)
    info = ingest_frames(tmp_path / "gray16.tif", tmp_path / "frames.zarr")
    assert (info.source_dtype, info.channels) == ("uint16", 1)
    assert np.array_equal(np.stack(stored(tmp_path / "frames.zarr"))[..., 0], gray)


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt"),
    [("scan.mp4", "libx264", "yuv444p"), ("scan.avi", "ffv1", "bgr0")],
)
def test_videos_decode_within_codec_loss_and_report_their_rate(
    tmp_path: Path, frames: list[np.ndarray], name: str, codec: str, pix_fmt: str
) -> None:
    video = write_video(tmp_path / name, frames[:6], codec, pix_fmt)
    info = ingest_frames(video, tmp_path / "frames.zarr")
    assert (info.container, info.count, info.channels, info.rate_hz) == ("video", 6, 3, 5.0)
    for got, want in zip(stored(tmp_path / "frames.zarr"), frames[:6], strict=True):
        assert np.abs(got.astype(int) - want).mean() < 4


def test_a_gray_video_stays_one_channel(tmp_path: Path, frames: list[np.ndarray]) -> None:
    video = write_video(tmp_path / "gray.mkv", frames[:3], "ffv1", "gray")
    info = ingest_frames(video, tmp_path / "frames.zarr")
    assert (info.count, info.channels, info.rate_hz) == (3, 1, 5.0)
    assert read_frame(tmp_path / "frames.zarr", 2).shape == (HEIGHT, WIDTH, 1)


def test_frames_of_another_size_name_the_frame_and_both_sizes(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    entries = {"f1.png": png_bytes(frames[0]), "f2.png": png_bytes(frames[1][:64, :64])}
    store = tmp_path / "frames.zarr"
    with pytest.raises(InvalidInput, match=r"frame 1 \('f2.png'\) is 64x64 .* frame 0 is 128x96"):
        ingest_frames(write_zip(tmp_path / "scan.zip", entries), store)
    assert not store.exists()
    with tifffile.TiffWriter(tmp_path / "scan.tif") as tif:
        tif.write(frames[0], photometric="rgb", metadata=None)
        tif.write(frames[1][:64], photometric="rgb", metadata=None)
    with pytest.raises(InvalidInput, match=r"frame 1 is 128x64 .* frame 0 is 128x96"):
        ingest_frames(tmp_path / "scan.tif", store)
    assert not store.exists()


@pytest.mark.parametrize(
    ("entry", "symlink", "message"),
    [
        ("../evil.png", False, "would escape its folder"),
        ("/etc/x.png", False, "would escape its folder"),
        ("link.png", True, "would escape its folder"),
        ("notes.txt", False, "is no PNG, JPEG or TIFF frame"),
    ],
)
def test_unsafe_or_foreign_zip_entries_are_refused_by_name(
    tmp_path: Path, frames: list[np.ndarray], entry: str, symlink: bool, message: str
) -> None:
    entries = {"f1.png": png_bytes(frames[0]), entry: png_bytes(frames[1])}
    archive = write_zip(tmp_path / "scan.zip", entries, (entry,) if symlink else ())
    with pytest.raises(InvalidInput, match=f"{entry!r} {message}"):
        ingest_frames(archive, tmp_path / "frames.zarr")
    assert not (tmp_path / "frames.zarr").exists()


@pytest.mark.parametrize(("name", "message"), [("scan.mp4", "the video"), ("scan.zip", "the zip")])
def test_an_upload_cut_in_half_is_invalid_and_leaves_nothing(
    tmp_path: Path, frames: list[np.ndarray], name: str, message: str
) -> None:
    if name.endswith(".zip"):
        upload = write_zip(
            tmp_path / name, {f"f{k}.png": png_bytes(f) for k, f in enumerate(frames)}
        )
    else:
        upload = write_video(tmp_path / name, frames[:6], "libx264", "yuv420p")
    upload.write_bytes(upload.read_bytes()[: upload.stat().st_size // 2])
    with pytest.raises(InvalidInput, match=f"cannot decode {message}"):
        ingest_frames(upload, tmp_path / "frames.zarr")
    assert not (tmp_path / "frames.zarr").exists()


def test_other_files_are_unsupported_and_empty_zips_invalid(tmp_path: Path) -> None:
    noise = tmp_path / "noise.bin"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    with pytest.raises(UnsupportedFormat, match="accepted: a multi-page TIFF"):
        ingest_frames(noise, tmp_path / "frames.zarr")
    empty = write_zip(tmp_path / "empty.zip", {"__MACOSX/._f1.png": b"junk"})
    with pytest.raises(InvalidInput, match="no frames"):
        ingest_frames(empty, tmp_path / "frames.zarr")
    assert not (tmp_path / "frames.zarr").exists()


@pytest.mark.parametrize(
    "limits",
    [FrameLimits(max_frames=3), FrameLimits(max_frame_pixels=1000), FrameLimits(max_total_bytes=9)],
)
def test_limits_are_too_large_for_every_container(
    tmp_path: Path, frames: list[np.ndarray], limits: FrameLimits
) -> None:
    entries = {f"f{k}.png": png_bytes(f) for k, f in enumerate(frames)}
    tifffile.imwrite(tmp_path / "s.tif", np.stack(frames), photometric="rgb")
    video = write_video(tmp_path / "s.mkv", frames[:6], "libx264", "yuv420p")
    for upload in (write_zip(tmp_path / "s.zip", entries), tmp_path / "s.tif", video):
        with pytest.raises(TooLarge):
            ingest_frames(upload, tmp_path / "frames.zarr", limits)
        assert not (tmp_path / "frames.zarr").exists()


def test_a_frame_out_of_range_is_not_found(tmp_path: Path, frames: list[np.ndarray]) -> None:
    ingest_frames(write_zip(tmp_path / "s.zip", {"f.png": png_bytes(frames[0])}), tmp_path / "z")
    assert frame_count(tmp_path / "z") == 1
    with pytest.raises(NotFound):
        read_frame(tmp_path / "z", 1)
    with pytest.raises(NotFound):
        frame_count(tmp_path / "missing")


def test_a_video_with_a_zip_of_frames_appended_is_read_as_the_video(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    video = write_video(tmp_path / "v.mp4", frames[:4], "libx264", "yuv444p")
    inner = write_zip(
        tmp_path / "inner.zip", {f"f{k}.png": png_bytes(f) for k, f in enumerate(frames)}
    )
    polyglot = tmp_path / "scan.mp4"
    polyglot.write_bytes(video.read_bytes() + inner.read_bytes())
    assert zipfile.is_zipfile(polyglot)
    info = ingest_frames(polyglot, tmp_path / "frames.zarr")
    assert (info.container, info.count) == ("video", 4)


def test_pages_sharing_one_tiny_strip_are_refused_as_a_bomb(tmp_path: Path) -> None:
    """64 pages of 4096 x 4096 in 25 KB were accepted, and their job ran for hours."""
    side, pages = 4096, 64
    block = zlib.compress(bytes(side * side), 9)
    tags = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8), (259, 3, 1, 8)]
    tags += [(262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, side)]
    tags += [(279, 4, 1, len(block))]
    ifd_bytes, start = 2 + 12 * len(tags) + 4, 8 + len(block)
    ifds = b"".join(
        struct.pack("<H", len(tags))
        + b"".join(struct.pack("<HHII", *tag) for tag in tags)
        + struct.pack("<I", start + (page + 1) * ifd_bytes if page < pages - 1 else 0)
        for page in range(pages)
    )
    upload = tmp_path / "pages.tif"
    upload.write_bytes(b"II*\x00" + struct.pack("<I", start) + block + ifds)
    with pytest.raises(TooLarge, match="over 1000 per byte of the upload: a decompression bomb"):
        ingest_frames(upload, tmp_path / "store")
    assert not (tmp_path / "store").exists()
