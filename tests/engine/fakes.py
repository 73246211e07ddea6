"""Numpy stand-ins for the engine's seams (SlideReader, Restorer)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tests.fixtures import BLUR_KERNEL
from workers.engine.readers import SlideInfo


class ArrayReader:
    """A single-level slide held in memory."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        h, w = pixels.shape[:2]
        self.info = SlideInfo(w, h, [(w, h)], [1.0], 0.5, 0.5, "test", "array")
        self.reads = 0

    def read_region(self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        self.reads += 1
        x, y = l0_xy
        return self.pixels[y : y + size[1], x : x + size[0]].copy()

    def close(self) -> None:
        pass


class Identity:
    scale = 1

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return batch.copy()


class Blur:
    """The same 3x3 binomial blur as the ONNX test model, zero padded per tile."""

    scale = 1

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                np.stack([ndimage.convolve(c, BLUR_KERNEL, mode="constant") for c in tile])
                for tile in batch
            ]
        )


class NearestX2:
    scale = 2

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return batch.repeat(2, axis=2).repeat(2, axis=3)


def whole_image_blur(pixels: np.ndarray) -> np.ndarray:
    """The reference: one convolution over the whole image, rounded like the engine."""
    channels = [
        ndimage.convolve(pixels[..., c].astype(np.float32) / 255.0, BLUR_KERNEL, mode="constant")
        for c in range(pixels.shape[2])
    ]
    return np.clip(np.rint(np.stack(channels, axis=2) * 255.0), 0, 255)
