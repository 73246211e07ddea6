"""Open untrusted slide files only in child processes with an address-space limit.

A file that crashes or exhausts a child breaks only that child: the pool is rebuilt and
the request gets a 4xx. The API uses this for inspection, thumbnails and input DZI tiles.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import resource
import threading
import zipfile
from pathlib import Path
from typing import Any

from PIL import Image

from workers.engine import dzi
from workers.engine.archives import unpack_slide_zip
from workers.engine.frames import FrameLimits, ingest_frames, read_frame
from workers.engine.read_errors import check_complete, explain, without_paths
from workers.engine.readers import ReaderLimits, SlideReader, open_slide, open_slide_cached
from workers.engine.thumbnails import read_thumbnail
from workers.errors import InvalidInput, RestoreError, TooLarge
from workers.layout import SequencePaths, SlidePaths

THUMBNAIL_PX = 1024


def _limit_memory(memory_mb: int) -> None:
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def inspect_upload(
    upload: str, slide_dir: str, limits: tuple[int, int], max_unpacked_bytes: int
) -> dict[str, Any]:
    """Open an uploaded file, check it reads end to end, and write its thumbnail.

    Returns the slide's path (for a zip, the MRXS file or a DICOM series' largest instance)
    and its description.
    """
    path = Path(upload)
    paths = SlidePaths(Path(slide_dir))
    if zipfile.is_zipfile(path):
        path = unpack_slide_zip(path, paths.unpacked, max_bytes=max_unpacked_bytes)
    check_complete(path)
    reader = open_slide(path, ReaderLimits(*limits))
    try:
        check_readable(reader)
        thumbnail, _ = read_thumbnail(reader, THUMBNAIL_PX)
    except Exception as exc:  # decoders raise their own errors on damaged data
        raise explain(path, exc) from exc
    finally:
        reader.close()
    Image.fromarray(thumbnail).save(paths.thumbnail)
    return {"path": str(path), "info": _info_dict(reader)}


def decode_sequence(
    upload: str, sequence_dir: str, max_frames: int, max_frame_pixels: int
) -> dict[str, Any]:
    """Decode an uploaded frame sequence into its frame store; write the first frame's thumbnail."""
    paths = SequencePaths(Path(sequence_dir))
    limits = FrameLimits(max_frames=max_frames, max_frame_pixels=max_frame_pixels)
    info = ingest_frames(Path(upload), paths.frames, limits)
    first = read_frame(paths.frames, 0)
    image = Image.fromarray(first[..., 0] if first.shape[2] == 1 else first)
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    image.save(paths.thumbnail)
    return dataclasses.asdict(info)


def check_readable(reader: SlideReader) -> None:
    """Read the far corner of every level: truncated files fail here, not in a job."""
    info = reader.info
    for level, (width, height) in enumerate(info.level_dimensions):
        ds = info.level_downsamples[level]
        size = (min(64, width), min(64, height))
        corner = (int((width - size[0]) * ds), int((height - size[1]) * ds))
        reader.read_region(corner, level, size)


def _info_dict(reader: SlideReader) -> dict[str, Any]:
    info = reader.info
    return {
        "width": info.width,
        "height": info.height,
        "level_count": info.level_count,
        "level_dimensions": [list(d) for d in info.level_dimensions],
        "level_downsamples": info.level_downsamples,
        "mpp_x": info.mpp_x,
        "mpp_y": info.mpp_y,
        "vendor": info.vendor,
        "reader": info.reader,
        "channels": [
            {"name": c.name, "color": c.color, "window": list(c.window)} for c in info.channels
        ],
        "properties": info.properties,
    }


def render_input_tile(path: str, limits: tuple[int, int], level: int, col: int, row: int) -> bytes:
    """JPEG bytes of one DZI tile of an input slide."""
    reader = open_slide_cached(path, ReaderLimits(*limits))
    zoom = dzi.DeepZoom(reader.info.width, reader.info.height)
    return dzi.encode(dzi.render_tile(reader, zoom, level, col, row))


def render_thumbnail(path: str, limits: tuple[int, int], max_px: int) -> bytes:
    """PNG bytes of a thumbnail of an input slide."""
    reader = open_slide_cached(path, ReaderLimits(*limits))
    thumbnail, _ = read_thumbnail(reader, max_px)
    return dzi.encode(thumbnail, "png")


class Sandbox:
    """A small pool of memory-limited child processes that open untrusted files."""

    def __init__(self, memory_mb: int, timeout_s: float, workers: int = 2) -> None:
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.workers = workers
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_limit_memory,
                    initargs=(self.memory_mb,),
                )
            return self._pool

    def run(self, function: Any, *args: Any, timeout_s: float | None = None) -> Any:
        """Call ``function(*args)`` in a child; a crash or time-out becomes InvalidInput."""
        pool = self._executor()
        timeout_s = timeout_s or self.timeout_s
        try:
            return pool.submit(function, *args).result(timeout=timeout_s)
        except RestoreError:
            raise
        except MemoryError as exc:
            raise TooLarge("reading this file needs more memory than readers may use") from exc
        except concurrent.futures.process.BrokenProcessPool as exc:
            self._reset()
            raise InvalidInput("the file crashed the reader process") from exc
        except concurrent.futures.TimeoutError as exc:
            self._reset()
            raise InvalidInput(f"reading the file took longer than {timeout_s} s") from exc
        except Exception as exc:
            raise InvalidInput(f"cannot read the file: {without_paths(str(exc))}") from exc

    def _reset(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            processes = list((getattr(pool, "_processes", None) or {}).values())
            for process in processes:
                process.kill()
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Stop the children."""
        self._reset()
