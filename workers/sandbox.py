"""Open untrusted slide files only in child processes with an address-space limit.

A file that crashes, exhausts or outlasts a child breaks only that child: the child is
killed and replaced, its request gets a 4xx, and calls running in the other children go
on. The API uses this for inspection, thumbnails and input DZI tiles.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image

from workers.engine import dzi
from workers.engine.archives import MAX_RATIO, is_zip_upload, unpack_slide_zip
from workers.engine.frames import FrameLimits, ingest_frames, read_frame
from workers.engine.read_errors import check_complete, explain, without_paths
from workers.engine.reader_cache import open_slide_cached
from workers.engine.readers import ReaderLimits, SlideReader, open_slide
from workers.engine.thumbnails import read_thumbnail
from workers.errors import InvalidInput, RestoreError, TooLarge
from workers.layout import SequencePaths, SlidePaths
from workers.memory_limit import limit_address_space

THUMBNAIL_PX = 1024
PARENT_POLL_S = 0.5
WATCH_STACK_BYTES = 256 * 1024  # the parent-watch thread needs next to no stack
M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)
Limits = tuple[int, int] | tuple[int, int, float]  # ReaderLimits' fields, in order


def inspect_upload(
    upload: str,
    slide_dir: str,
    limits: Limits,
    max_unpacked_bytes: int,
    max_zip_ratio: float = MAX_RATIO,
) -> dict[str, Any]:
    """Open an uploaded file, check it reads end to end, and write its thumbnail.

    Returns the slide's path (for a zip, the MRXS file or a DICOM series' largest instance)
    and its description. A file is a zip only if it starts as one (a TIFF with a zip
    appended is a TIFF).
    """
    path = Path(upload)
    paths = SlidePaths(Path(slide_dir))
    if is_zip_upload(path):
        path = unpack_slide_zip(path, paths.unpacked, max_unpacked_bytes, max_zip_ratio)
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
    upload: str,
    sequence_dir: str,
    max_frames: int,
    max_frame_pixels: int,
    max_pixels_per_byte: float = 1000.0,
) -> dict[str, Any]:
    """Decode an uploaded frame sequence into its frame store; write the first frame's thumbnail."""
    paths = SequencePaths(Path(sequence_dir))
    limits = FrameLimits(max_frames, max_frame_pixels, max_pixels_per_byte=max_pixels_per_byte)
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


def render_input_tile(path: str, limits: Limits, level: int, col: int, row: int) -> bytes:
    """JPEG bytes of one DZI tile of an input slide."""
    reader = open_slide_cached(path, ReaderLimits(*limits))
    zoom = dzi.DeepZoom(reader.info.width, reader.info.height)
    return dzi.encode(dzi.render_tile(reader, zoom, level, col, row))


def render_thumbnail(path: str, limits: Limits, max_px: int) -> bytes:
    """PNG bytes of a thumbnail of an input slide."""
    reader = open_slide_cached(path, ReaderLimits(*limits))
    thumbnail, _ = read_thumbnail(reader, max_px)
    return dzi.encode(thumbnail, "png")


class _TimedOut(Exception):
    """The call outlasted its time limit."""


class _Crashed(Exception):
    """The child died during the call."""


class _Child:
    """One spawned, memory-limited process that runs calls one at a time."""

    def __init__(self, memory_mb: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child_end, memory_mb), name="sandbox", daemon=True
        )
        self.process.start()
        child_end.close()

    def call(self, function: Any, args: tuple[Any, ...], timeout_s: float) -> Any:
        """The call's result; raises what it raised, _TimedOut or _Crashed."""
        try:
            self._conn.send((function, args))
        except (BrokenPipeError, ConnectionError) as exc:
            raise _Crashed from exc
        ready = multiprocessing.connection.wait([self._conn, self.process.sentinel], timeout_s)
        if not ready:
            raise _TimedOut
        try:
            succeeded, value = self._conn.recv()
        except (EOFError, ConnectionError) as exc:
            raise _Crashed from exc
        if not succeeded:
            raise value
        return value

    def kill(self) -> None:
        """Stop the child at once, whatever it is doing."""
        self.process.kill()
        self.process.join(timeout=10)
        self._conn.close()


def _serve(conn: multiprocessing.connection.Connection, memory_mb: int) -> None:
    """A child's loop: run each call received, send back its result or its exception."""
    _one_malloc_arena()
    limit_address_space(memory_mb)
    default_stack = threading.stack_size(WATCH_STACK_BYTES)  # its stack counts in the limit
    threading.Thread(
        target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True
    ).start()
    threading.stack_size(default_stack)
    while True:
        try:
            function, args = conn.recv()
        except EOFError:
            return  # the parent has gone
        try:
            reply = (True, function(*args))
        except BaseException as exc:  # raised again in the parent
            reply = (False, _portable(exc))
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            conn.send((False, RuntimeError(f"unreadable result: {exc}")))


def _one_malloc_arena() -> None:
    """Keep glibc from reserving a 64 MiB malloc arena for the watch thread.

    The child's address space is limited, and an arena's reservation counts in it: with
    one, a valid slide could fail to open under a small limit.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)


def _exit_with_parent(parent_pid: int) -> None:
    """End this child once its parent has gone, even in the middle of a call.

    An idle child sees the pipe close; a busy one would decode on for up to its time-out
    (minutes for a video) after a ``kill -9`` of the API. Not PR_SET_PDEATHSIG: that fires
    when the parent's *thread* ends, and the API starts children from short-lived threads.
    """
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _portable(exc: BaseException) -> BaseException:
    """The exception itself where it survives pickling, else its message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(str(exc))
    return exc


class Sandbox:
    """A few memory-limited child processes that open untrusted files.

    Each call runs in a child of its own until it returns; a call that times out, crashes
    its child or runs out of memory has that child killed and replaced, and no other.
    """

    def __init__(self, memory_mb: int, timeout_s: float, workers: int = 2) -> None:
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.workers = workers
        self._lock = threading.Lock()
        self._live: set[_Child] = set()
        self._idle: queue.SimpleQueue[_Child | None] = queue.SimpleQueue()
        for _ in range(workers):
            self._idle.put(None)  # started on first use

    def run(self, function: Any, *args: Any, timeout_s: float | None = None) -> Any:
        """Call ``function(*args)`` in a child; a crash or time-out becomes InvalidInput."""
        timeout_s = timeout_s or self.timeout_s
        child = self._idle.get()  # waits while every child is busy
        try:
            if child is None or not child.process.is_alive():
                child = self._replace(child)
            return child.call(function, args, timeout_s)
        except RestoreError:
            raise
        except MemoryError as exc:
            child = self._replace(child)
            raise TooLarge("reading this file needs more memory than readers may use") from exc
        except _Crashed as exc:
            child = self._replace(child)
            raise InvalidInput("the file crashed the reader process") from exc
        except _TimedOut as exc:
            child = self._replace(child)
            raise InvalidInput(f"reading the file took longer than {timeout_s} s") from exc
        except Exception as exc:
            raise InvalidInput(f"cannot read the file: {without_paths(str(exc))}") from exc
        finally:
            self._idle.put(child)

    def _replace(self, child: _Child | None) -> _Child:
        """Kill ``child`` (if any) and start a fresh one in its place."""
        if child is not None:
            child.kill()
        fresh = _Child(self.memory_mb)
        with self._lock:
            if child is not None:
                self._live.discard(child)
            self._live.add(fresh)
        return fresh

    def close(self) -> None:
        """Stop the children (a later call starts new ones)."""
        with self._lock:
            children, self._live = self._live, set()
        for child in children:
            child.kill()
