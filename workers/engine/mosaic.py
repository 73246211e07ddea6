"""A sequence of registered frames presented as one slide (the ``SlideReader`` seam).

Frames are placed at their positions rounded to whole pixels; the canvas is the bounding box of
the placed frames. Where frames overlap they blend, each weighed by a linear feather that rises
from its edges, so no seams show; pixels no frame covers are ``background``. Virtual pyramid
levels (downsamples 1, 4, 16, ...) compose frames shrunk by the level's factor, so thumbnails
stay cheap. Decoded frames sit in a small LRU cache.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from PIL import Image

from workers.engine.blending import Accumulator
from workers.engine.geometry import Box
from workers.engine.readers import SlideInfo, to_rgb_uint8
from workers.errors import InvalidInput

LEVEL_FACTOR = 4
SMALLEST_LEVEL_PX = 1024  # the last level's longest side is at most this
CACHED_FRAMES = 16  # full-resolution frames' worth of memory


class MosaicReader:
    """Frames laid out at ``positions`` and feather-blended, read like a slide."""

    def __init__(
        self,
        frame: Callable[[int], np.ndarray],
        positions: np.ndarray,
        frame_size: tuple[int, int],
        background: int = 255,
        mpp: float | None = None,
        ramp_px: int | None = None,
    ) -> None:
        """Lay out ``len(positions)`` frames.

        Args:
            frame: frame ``i`` as uint8 (rows, cols[, 1 or 3]) of ``frame_size``.
            positions: (n, 2) float (x, y) of each frame's top-left corner, any origin.
            frame_size: (width, height) of every frame.
            background: grey level of pixels no frame covers.
            mpp: microns per pixel.
            ramp_px: feather width; by default half the usual overlap of consecutive frames.

        """
        rounded = np.rint(np.asarray(positions, dtype=np.float64)).astype(np.int64)
        if rounded.ndim != 2 or rounded.shape[0] == 0 or rounded.shape[1] != 2:
            raise InvalidInput("a mosaic needs (n, 2) frame positions, n >= 1")
        self._frame = frame
        self._frame_size = frame_size
        self._placed = rounded - rounded.min(axis=0)
        self._background = background
        self._ramp_px = default_ramp_px(self._placed, frame_size) if ramp_px is None else ramp_px
        width, height = (int(v) for v in self._placed.max(axis=0) + frame_size)
        downsamples = level_downsamples(width, height)
        self.info = SlideInfo(
            width=width,
            height=height,
            level_dimensions=[(math.ceil(width / d), math.ceil(height / d)) for d in downsamples],
            level_downsamples=[float(d) for d in downsamples],
            mpp_x=mpp,
            mpp_y=mpp,
            vendor="sequence",
            reader="mosaic",
            properties={"mosaic.frames": str(len(rounded)), "mosaic.ramp-px": str(self._ramp_px)},
        )
        self._cache = _FrameCache(CACHED_FRAMES * frame_size[0] * frame_size[1] * 3)
        self._weights: dict[int, np.ndarray] = {}

    @property
    def placed_xy(self) -> np.ndarray:
        """(n, 2) integer (x, y) of each frame's top-left corner on the canvas."""
        placed: np.ndarray = self._placed.copy()
        return placed

    def read_region(self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 (rows, cols, 3) of ``size`` at ``level`` from level-0 ``l0_xy``."""
        downsample = int(self.info.level_downsamples[level])
        box = Box(round(l0_xy[0] / downsample), round(l0_xy[1] / downsample), *size)
        sums = Accumulator(box, 3)
        for index in self.frames_in(box, level):
            sums.add(
                self._frame_box(index, level), self._level_frame(index, level), self._weight(level)
            )
        blended = np.rint(sums.total / np.maximum(sums.weight, 1e-12)[..., None])
        out = np.where((sums.weight > 0)[..., None], blended, float(self._background))
        pixels: np.ndarray = np.clip(out, 0, 255).astype(np.uint8)
        return pixels

    def frames_in(self, box: Box, level: int = 0) -> np.ndarray:
        """Indices of the frames that overlap ``box`` (pixels of ``level``)."""
        downsample = int(self.info.level_downsamples[level])
        origins = _level_origins(self._placed, downsample)
        width, height = _level_size(self._frame_size, downsample)
        x, y = origins[:, 0], origins[:, 1]
        hit = (x < box.right) & (x + width > box.x) & (y < box.bottom) & (y + height > box.y)
        return np.flatnonzero(hit)

    def close(self) -> None:
        """Drop the cached frames."""
        self._cache.clear()

    def _frame_box(self, index: int, level: int) -> Box:
        """Where frame ``index`` lies in the pixels of ``level``."""
        downsample = int(self.info.level_downsamples[level])
        x, y = _level_origins(self._placed[index : index + 1], downsample)[0]
        return Box(int(x), int(y), *_level_size(self._frame_size, downsample))

    def _level_frame(self, index: int, level: int) -> np.ndarray:
        """Frame ``index`` shrunk to ``level`` as RGB uint8, cached."""
        cached = self._cache.get((level, index))
        if cached is not None:
            return cached
        pixels = self._decode(index)
        shrunk = shrink(pixels, int(self.info.level_downsamples[level]))
        self._cache.put((level, index), shrunk)
        return shrunk

    def _decode(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8, checked against the frame size."""
        pixels = self._frame(index)
        width, height = self._frame_size
        if pixels.shape[:2] != (height, width):
            raise InvalidInput(f"frame {index} is {pixels.shape[:2]}, expected {(height, width)}")
        return to_rgb_uint8(pixels)

    def _weight(self, level: int) -> np.ndarray:
        """The feather of a frame at ``level`` (rows, cols), the same for every frame."""
        if level not in self._weights:
            downsample = int(self.info.level_downsamples[level])
            ramp = max(1, round(self._ramp_px / downsample))
            self._weights[level] = feather(_level_size(self._frame_size, downsample), ramp)
        return self._weights[level]


def level_downsamples(width: int, height: int) -> list[int]:
    """1, 4, 16, ... until the level's longest side is at most ``SMALLEST_LEVEL_PX``."""
    downsamples = [1]
    while max(width, height) / downsamples[-1] > SMALLEST_LEVEL_PX:
        downsamples.append(downsamples[-1] * LEVEL_FACTOR)
    return downsamples


def default_ramp_px(placed: np.ndarray, frame_size: tuple[int, int]) -> int:
    """Half the median overlap of consecutive frames along their main step."""
    fallback = max(1, min(frame_size) // 8)
    if len(placed) < 2:
        return fallback
    steps = np.abs(np.diff(placed, axis=0))
    main = np.argmax(steps, axis=1)
    overlaps = np.asarray(frame_size)[main] - steps[np.arange(len(steps)), main]
    overlaps = overlaps[overlaps > 0]
    return max(1, int(np.median(overlaps)) // 2) if overlaps.size else fallback


def feather(size: tuple[int, int], ramp_px: int) -> np.ndarray:
    """(rows, cols) float32 weights rising linearly over ``ramp_px`` from each edge to 1."""

    def ramp(n: int) -> np.ndarray:
        edge_distance = np.minimum(np.arange(n), np.arange(n)[::-1]) + 1.0
        return np.minimum(edge_distance / (ramp_px + 1.0), 1.0)

    weights: np.ndarray = np.outer(ramp(size[1]), ramp(size[0])).astype(np.float32)
    return weights


def shrink(pixels: np.ndarray, factor: int) -> np.ndarray:
    """RGB uint8 means of ``factor`` x ``factor`` blocks; partial blocks at the edges too."""
    if factor == 1:
        return pixels
    shrunk: np.ndarray = np.asarray(Image.fromarray(pixels).reduce(factor))
    return shrunk


def _level_origins(placed: np.ndarray, downsample: int) -> np.ndarray:
    """Frames' top-left corners in the pixels of a level."""
    origins: np.ndarray = np.floor(placed / downsample + 0.5).astype(np.int64)
    return origins


def _level_size(frame_size: tuple[int, int], downsample: int) -> tuple[int, int]:
    """(width, height) of a frame shrunk by ``downsample``."""
    return math.ceil(frame_size[0] / downsample), math.ceil(frame_size[1] / downsample)


class _FrameCache:
    """Least recently used frames, up to a number of bytes."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._frames: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> np.ndarray | None:
        """The cached frame, marked as just used, or None."""
        with self._lock:
            pixels = self._frames.get(key)
            if pixels is not None:
                self._frames.move_to_end(key)
            return pixels

    def put(self, key: tuple[int, int], pixels: np.ndarray) -> None:
        """Cache ``pixels``, evicting the least recently used frames beyond the budget."""
        with self._lock:
            if key in self._frames:
                return
            self._frames[key] = pixels
            self._bytes += pixels.nbytes
            while self._bytes > self._max_bytes and len(self._frames) > 1:
                _, evicted = self._frames.popitem(last=False)
                self._bytes -= evicted.nbytes

    def clear(self) -> None:
        """Forget every frame."""
        with self._lock:
            self._frames.clear()
            self._bytes = 0
