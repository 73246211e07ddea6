"""Tile predictions laid into a region's output, optionally weighted, normalised at the end."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from workers.engine.geometry import Box


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as rounded uint8."""
    pixels: np.ndarray = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    return pixels


class Canvas:
    """Abutting tile outputs laid side by side into one output box, as uint8."""

    def __init__(self, box: Box, channels: int) -> None:
        self.box = box
        self.pixels = np.zeros((box.height, box.width, channels), dtype=np.uint8)
        self.filled = 0

    def add(self, core: Box, prediction: np.ndarray, window: np.ndarray | None = None) -> None:
        """Lay ``prediction`` (rows, cols, channels, values in [0, 1]) at ``core``."""
        if window is not None:
            raise ValueError("a canvas lays tiles side by side; weights need an Accumulator")
        overlap = core.intersect(self.box)
        if overlap is None:
            return
        src = overlap.relative_to(core).slices()
        self.pixels[overlap.relative_to(self.box).slices()] = to_uint8(prediction[src])
        self.filled += overlap.area

    def result(self) -> np.ndarray:
        """The laid tiles (every pixel must have been covered exactly once)."""
        if self.filled != self.box.area:
            raise RuntimeError("the tiles do not cover the output box exactly once")
        return self.pixels


class Accumulator:
    """Weighted sum of tile predictions over one output box, normalised at the end."""

    def __init__(self, box: Box, channels: int) -> None:
        self.box = box
        self.total = np.zeros((box.height, box.width, channels), dtype=np.float32)
        self.weight = np.zeros((box.height, box.width), dtype=np.float32)

    def add(self, core: Box, prediction: np.ndarray, window: np.ndarray | None = None) -> None:
        """Add ``prediction`` (rows, cols, channels) placed at ``core`` (output pixels).

        ``window`` weighs it per pixel (rows, cols); None weighs every pixel 1.
        """
        overlap = core.intersect(self.box)
        if overlap is None:
            return
        src = overlap.relative_to(core).slices()
        dst = overlap.relative_to(self.box).slices()
        if window is None:
            self.total[dst] += prediction[src]
            self.weight[dst] += 1.0
            return
        w = window[src]
        self.total[dst] += prediction[src] * w[..., None]
        self.weight[dst] += w

    def result_over(self, original: np.ndarray, ramp_px: int) -> np.ndarray:
        """``original`` (uint8) with the tiles laid over it where they reached.

        Their weight rises from 0 at the edge of the reached area to 1 at ``ramp_px``
        inside it; the box's own edges count as inside (the area may go on beyond them).
        Pixels no tile reached keep the original exactly.
        """
        result: np.ndarray = original.copy()
        reached = self.weight > 0
        rows, cols = np.nonzero(reached.any(axis=1))[0], np.nonzero(reached.any(axis=0))[0]
        if not rows.size:
            return result
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        window = tuple(  # the reached box and the ramp around it: all the ramp depends on
            slice(max(s.start - ramp_px, 0), min(s.stop + ramp_px, n))
            for s, n in zip(box, reached.shape, strict=True)
        )
        inner = np.zeros(reached.shape, dtype=np.float32)
        inner[window] = _inner_ramp(reached[window], ramp_px)
        weight = inner[box][..., None]
        blend = self.total[box] / np.maximum(self.weight[box], 1e-12)[..., None]
        base = original[box].astype(np.float32) / 255.0
        mixed = np.clip(np.rint((base + weight * (blend - base)) * 255.0), 0, 255)
        result[box] = np.where(weight > 0, mixed, original[box]).astype(np.uint8)
        return result


def _inner_ramp(inside: np.ndarray, ramp_px: int) -> np.ndarray:
    """Per pixel of ``inside``: distance to its outside over ``ramp_px``, at most 1.

    The array's own edges are not an outside: it is padded with its edge values.
    """
    if ramp_px <= 0:
        return inside.astype(np.float32)
    padded = np.pad(inside, ramp_px, mode="edge")
    distance = ndimage.distance_transform_edt(padded)[ramp_px:-ramp_px, ramp_px:-ramp_px]
    ramp: np.ndarray = np.clip(distance / ramp_px, 0.0, 1.0).astype(np.float32)
    return ramp
