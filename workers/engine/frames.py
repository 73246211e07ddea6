"""Frame sequences from scanning microscopes, decoded into one canonical Zarr frame store.

Accepted uploads, told apart by content: a multi-page TIFF or OME-TIFF, a zip of PNG, JPEG or
TIFF frames (in natural order of their names), or a video FFmpeg demuxes (MP4, AVI, MOV, MKV,
...). Frames are decoded and written one at a time, so memory does not grow with their number.

The store is a Zarr v2 array ``(n, height, width, channels)`` of uint8, one chunk per frame,
with 1 (gray) or 3 (RGB) channels: RGBA and gray + alpha drop their alpha; 2 samples (in a
TIFF) or more than 4 are refused. 8-bit frames are stored unchanged; 16-bit, 32-bit, float or
bilevel frames are scaled by the sequence's global maximum (``rint(value * 255 / max)``,
negatives to 0), which costs a first decoding pass. FFmpeg converts video frames to 8-bit RGB
(gray for a gray stream).
"""

from __future__ import annotations

import io
import re
import shutil
import warnings
import zipfile
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from itertools import chain
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import av
import numcodecs
import numpy as np
import tifffile
import zarr
from PIL import Image

from workers.errors import InvalidInput, NotFound, TooLarge, UnsupportedFormat

ACCEPTED = (
    "a multi-page TIFF or OME-TIFF, a zip of PNG/JPEG/TIFF frames, "
    "or a video (MP4, AVI, MOV, MKV, ...)"
)
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
FRAME_AXES = frozenset("TZIQ")  # OME/ImageJ series axes whose planes are frames
PIL_KEPT_MODES = frozenset({"1", "L", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I", "F"})
VIDEO_DEMUXERS = frozenset(
    {"mov", "mp4", "avi", "matroska", "webm", "mpegts", "mpeg", "flv", "asf", "ogg", "gif"}
    | {"nut", "ivf", "h264", "hevc", "m4v", "mxf", "mjpeg"}
)
DECODE_ERRORS = (tifffile.TiffFileError, av.FFmpegError, zipfile.BadZipFile, OSError, ValueError)
DECODE_ERRORS_MORE = (RuntimeError, SyntaxError, EOFError)  # Pillow, imagecodecs, zlib
S_IFMT, S_IFLNK = 0o170000, 0o120000
FIRST_CAPACITY = 16

Frame = tuple[str, np.ndarray]  # (zip entry name, else "", pixels as decoded)
FrameSource = Callable[[], Generator[Frame, None, None]]


@dataclass(frozen=True)
class FrameLimits:
    """Bounds on an upload, checked before decoding wherever the container declares sizes."""

    max_frames: int = 100_000
    max_frame_pixels: int = 100_000_000
    max_frame_bytes: int = 2**30  # one zip entry, uncompressed
    max_total_bytes: int = 64 * 2**30  # all frames decoded; also a zip's entries uncompressed
    max_pixels_per_byte: float = 1000.0  # of a TIFF or zip upload (not video): more is a bomb
    max_total_pixels: int | None = None  # set from the above and the upload's size


@dataclass(frozen=True)
class FramesInfo:
    """What an ingested sequence holds (``source_dtype`` is the decoded input's, e.g. uint16)."""

    count: int
    width: int
    height: int
    channels: int
    source_dtype: str
    container: str  # "tiff" | "zip" | "video"
    rate_hz: float | None  # a video's average frame rate, else None


def ingest_frames(upload: Path, store: Path, limits: FrameLimits = FrameLimits()) -> FramesInfo:
    """Decode ``upload`` into a frame store at ``store``, replacing any store there.

    Raises:
        UnsupportedFormat: the upload is no TIFF, zip or video.
        InvalidInput: it cannot be decoded, a zip entry is unsafe or no image, frames differ
            in size or channels, or it holds no frame. Nothing is left at ``store``.
        TooLarge: it exceeds ``limits``. Nothing is left at ``store``.

    """
    try:
        container = _container(upload)
        if container != "video":  # codecs may store a still scene in next to nothing
            density = limits.max_pixels_per_byte * upload.stat().st_size
            limits = replace(limits, max_total_pixels=int(density))
        rate_hz = _video_rate(upload) if container == "video" else None
        read = {"tiff": _tiff_frames, "zip": _zip_frames, "video": _video_frames}[container]
        first, count = _write(lambda: read(upload, limits), store, limits)
        height, width, channels = first.shape
        info = FramesInfo(count, width, height, channels, first.dtype.name, container, rate_hz)
        _open(store, "r+").attrs["frames"] = asdict(info)
    except BaseException:
        shutil.rmtree(store, ignore_errors=True)
        raise
    return info


def read_frame(store: Path, index: int) -> np.ndarray:
    """Pixels ``(height, width, channels)`` uint8 of frame ``index`` (0-based)."""
    array = _open(store)
    if not 0 <= index < array.shape[0]:
        raise NotFound(f"frame {index} does not exist; the store holds {array.shape[0]} frames")
    return np.asarray(array[index])


def frame_count(store: Path) -> int:
    """How many frames the store holds."""
    return int(_open(store).shape[0])


def _open(store: Path, mode: Literal["r", "r+"] = "r") -> zarr.Array[Any]:
    if not (store / ".zarray").is_file():
        raise NotFound(f"no frame store at {store}")
    return zarr.open_array(str(store), mode=mode, zarr_format=2)


def _write(source: FrameSource, store: Path, limits: FrameLimits) -> tuple[np.ndarray, int]:
    """Write every frame; return the first one as decoded and the count."""
    decoded = source()
    checked = _checked(decoded, limits)
    first = next(checked)
    frames: Iterator[np.ndarray] = chain([first], checked)
    peak: float | None = None
    if first.dtype != np.uint8:  # a pass for the global maximum, then one to write
        checked.close()
        decoded.close()
        peak = max(float(np.fmax.reduce(f, None, initial=0)) for f in _checked(source(), limits))
        frames = _checked(source(), limits)
    array = _create(store, first.shape)
    count = 0
    for count, frame in enumerate(frames, start=1):
        if count > array.shape[0]:
            array.resize((2 * array.shape[0], *first.shape))
        array[count - 1] = frame if peak is None else _to_uint8(frame, peak)
    array.resize((count, *first.shape))
    return first, count


def _create(store: Path, frame_shape: tuple[int, ...]) -> zarr.Array[Any]:
    return zarr.create_array(
        str(store),
        shape=(FIRST_CAPACITY, *frame_shape),
        chunks=(1, *frame_shape),
        dtype="uint8",
        fill_value=0,
        compressors=numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE),
        zarr_format=2,
        overwrite=True,
    )


def _checked(frames: Iterator[Frame], limits: FrameLimits) -> Generator[np.ndarray, None, None]:
    """Frames as (h, w, c) in their decoded dtype, all alike and within ``limits``."""
    first: np.ndarray | None = None
    total_bytes = total_pixels = 0
    for index, (name, pixels) in enumerate(frames):
        frame = _as_hwc(index, name, pixels)
        first = frame if first is None else first
        _check_alike(index, name, frame, first)
        _check_pixels(frame.shape[1], frame.shape[0], limits, _label(index, name))
        total_bytes += frame.nbytes
        total_pixels += frame.shape[0] * frame.shape[1]
        if limits.max_total_pixels is not None and total_pixels > limits.max_total_pixels:
            raise TooLarge(
                f"the frames decode to more than {limits.max_total_pixels:,} pixels, over "
                f"{limits.max_pixels_per_byte:g} per byte of the upload: a decompression bomb "
                "or a damaged header"
            )
        if index >= limits.max_frames:
            raise TooLarge(f"the sequence holds more than {limits.max_frames} frames")
        if total_bytes > limits.max_total_bytes:
            raise TooLarge(f"the decoded frames exceed {limits.max_total_bytes} B")
        yield frame
    if first is None:
        raise InvalidInput("the upload holds no frames")


def _as_hwc(index: int, name: str, pixels: np.ndarray) -> np.ndarray:
    frame = pixels if pixels.ndim == 3 else pixels[..., np.newaxis]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
        raise InvalidInput(f"{_label(index, name)} of shape {pixels.shape} is no gray/RGB image")
    frame = frame[..., :3]
    return frame if frame.dtype.isnative else frame.astype(frame.dtype.newbyteorder("="))


def _check_alike(index: int, name: str, frame: np.ndarray, first: np.ndarray) -> None:
    if frame.shape != first.shape or frame.dtype != first.dtype:
        raise InvalidInput(
            f"{_label(index, name)} is {_describe(frame)} but frame 0 is {_describe(first)}; "
            "all frames must have the same size, channels and type"
        )


def _describe(frame: np.ndarray) -> str:
    height, width, channels = frame.shape
    return f"{width}x{height} px, {channels} channel(s) of {frame.dtype.name}"


def _label(index: int, name: str) -> str:
    return f"frame {index} ({name!r})" if name else f"frame {index}"


def _check_pixels(width: int, height: int, limits: FrameLimits, what: str) -> None:
    if width * height > limits.max_frame_pixels:
        raise TooLarge(f"{what} has {width}x{height} px, over {limits.max_frame_pixels}")


def _to_uint8(frame: np.ndarray, peak: float) -> np.ndarray:
    if peak <= 0:
        return np.zeros(frame.shape, np.uint8)
    scaled = frame.astype(np.float32) * np.float32(255.0 / peak)
    np.nan_to_num(scaled, copy=False, nan=0.0)
    pixels: np.ndarray = np.rint(np.clip(scaled, 0, 255, out=scaled)).astype(np.uint8)
    return pixels


def _container(upload: Path) -> Literal["tiff", "zip", "video"]:
    with upload.open("rb") as file:
        head = file.read(16)
    if head[:4] in TIFF_MAGIC:
        return "tiff"
    if head[:4] == b"PK\x03\x04":  # a zip from its first byte (not a video with one appended)
        return "zip"
    if _video_magic(head) or _ffmpeg_opens(upload):
        return "video"
    raise UnsupportedFormat(f"{upload.name} is no frame sequence; accepted: {ACCEPTED}")


def _video_magic(head: bytes) -> bool:
    """ISO media (MP4, MOV), AVI or Matroska/WebM: decoding errors are then InvalidInput."""
    avi = head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX")
    return head[4:8] == b"ftyp" or avi or head[:4] == b"\x1aE\xdf\xa3"


def _ffmpeg_opens(upload: Path) -> bool:
    """Whether FFmpeg demuxes a video container (not a single image) with a video stream."""
    try:
        with av.open(str(upload)) as container:
            names = set(container.format.name.split(","))
            return bool(names & VIDEO_DEMUXERS) and bool(container.streams.video)
    except (av.FFmpegError, OSError, ValueError):
        return False


@contextmanager
def _decode_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (*DECODE_ERRORS, *DECODE_ERRORS_MORE) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)  # FFmpeg's, without our path
        raise InvalidInput(f"cannot decode {what}: {reason}") from exc


def _tiff_frames(upload: Path, limits: FrameLimits) -> Generator[Frame, None, None]:
    with _decode_errors("the TIFF"), tifffile.TiffFile(upload) as tif:
        pages = _tiff_pages(tif)
        if len(pages) > limits.max_frames:
            raise TooLarge(f"the TIFF holds {len(pages)} frames, over {limits.max_frames}")
        for index, page in enumerate(pages):
            if page is None:
                raise InvalidInput(f"frame {index} is missing from the TIFF")
            yield "", _page_pixels(page, limits, f"frame {index}")


def _tiff_pages(tif: tifffile.TiffFile) -> Any:
    """Every page (read lazily), or for OME/ImageJ the first series' planes along T/Z/I/Q."""
    if not (tif.is_ome or tif.is_imagej):
        return tif.pages
    series = tif.series[0]
    frame_axes = series.axes.removesuffix("S")[:-2]
    planes = int(np.prod(series.shape[: len(frame_axes)]))
    if not set(frame_axes) <= FRAME_AXES or len(series.pages) != planes:
        raise InvalidInput(f"TIFF series of axes {series.axes!r} is no sequence of 2-D frames")
    return series.pages


def _page_pixels(page: Any, limits: FrameLimits, what: str) -> np.ndarray:
    key = page.keyframe
    _check_pixels(key.imagewidth, key.imagelength, limits, what)
    pixels: np.ndarray = page.asarray()
    return np.moveaxis(pixels, 0, -1) if key.axes.startswith("S") else pixels


def _zip_frames(upload: Path, limits: FrameLimits) -> Generator[Frame, None, None]:
    with _decode_errors("the zip archive"), zipfile.ZipFile(upload) as bundle:
        for entry in _frame_entries(bundle, limits):
            data = bundle.read(entry)  # zipfile stops at the declared (checked) size
            yield entry.filename, _entry_pixels(entry.filename, data, limits)


def _frame_entries(bundle: zipfile.ZipFile, limits: FrameLimits) -> list[zipfile.ZipInfo]:
    """The image entries in natural order of their names, checked before any is decoded."""
    entries = [e for e in bundle.infolist() if not e.is_dir() and _is_frame_entry(e, limits)]
    if len(entries) > limits.max_frames:
        raise TooLarge(f"the zip holds {len(entries)} frames, over {limits.max_frames}")
    if sum(e.file_size for e in entries) > limits.max_total_bytes:
        raise TooLarge(f"the zip expands past {limits.max_total_bytes} B")
    return sorted(entries, key=lambda e: (_natural_key(e.filename), e.filename))


def _is_frame_entry(entry: zipfile.ZipInfo, limits: FrameLimits) -> bool:
    """False for hidden and ``__MACOSX/`` entries; raises for unsafe, large or other files."""
    name = entry.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    absolute = name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) is not None
    if absolute or ".." in parts or (entry.external_attr >> 16) & S_IFMT == S_IFLNK:
        raise InvalidInput(f"zip entry {name!r} would escape its folder")
    if parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts):
        return False
    if not name.lower().endswith(IMAGE_SUFFIXES):
        raise InvalidInput(f"zip entry {name!r} is no PNG, JPEG or TIFF frame")
    if entry.file_size > limits.max_frame_bytes:
        raise TooLarge(f"zip entry {name!r} holds {entry.file_size} B, over the frame limit")
    return True


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    """Sort key putting ``frame2`` before ``frame10``."""
    return [(0, int(p)) if p.isdigit() else (1, p.casefold()) for p in re.split(r"(\d+)", name)]


def _entry_pixels(name: str, data: bytes, limits: FrameLimits) -> np.ndarray:
    with _decode_errors(f"zip entry {name!r}"):
        if data[:4] not in TIFF_MAGIC:
            return _pillow_pixels(name, data, limits)
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            if len(tif.pages) != 1:
                raise InvalidInput(f"zip entry {name!r} holds {len(tif.pages)} pages, not one")
            return _page_pixels(tif.pages.first, limits, f"zip entry {name!r}")


def _pillow_pixels(name: str, data: bytes, limits: FrameLimits) -> np.ndarray:
    with warnings.catch_warnings():  # our own pixel limit applies, not Pillow's
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data), formats=("PNG", "JPEG"))
    with image:
        _check_pixels(image.width, image.height, limits, f"zip entry {name!r}")
        if image.mode not in PIL_KEPT_MODES:
            return np.asarray(image.convert("L" if image.mode == "LA" else "RGB"))
        return np.asarray(image)


def _video_rate(upload: Path) -> float | None:
    with _decode_errors("the video"), av.open(str(upload)) as container:
        if not container.streams.video:
            raise UnsupportedFormat(f"{upload.name} holds no video stream; accepted: {ACCEPTED}")
        rate = container.streams.video[0].average_rate
        return float(rate) if rate else None


def _video_frames(upload: Path, limits: FrameLimits) -> Generator[Frame, None, None]:
    with _decode_errors("the video"), av.open(str(upload)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context
        _check_pixels(codec.width, codec.height, limits, "the video's frames")
        if stream.frames > limits.max_frames:
            raise TooLarge(f"the video holds {stream.frames} frames, over {limits.max_frames}")
        pixel_format = "gray" if (codec.pix_fmt or "").startswith("gray") else "rgb24"
        stream.thread_type = "AUTO"
        count = 0
        for frame in container.decode(stream):
            count += 1
            yield "", frame.to_ndarray(format=pixel_format)
        if count < stream.frames:
            raise InvalidInput(
                f"cannot decode the video: it ends at frame {count} of {stream.frames}"
            )
