"""Downscaled views of a slide, built block by block so memory stays bounded."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from workers.engine.readers import SlideReader

BLOCK_PX = 2048


def best_level(reader: SlideReader, downsample: float) -> int:
    """The coarsest level that is still at least as detailed as ``downsample``."""
    levels = reader.info.level_downsamples
    candidates = [i for i, d in enumerate(levels) if d <= downsample * 1.001]
    return max(candidates, key=lambda i: levels[i]) if candidates else 0


def resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(rows, cols, channels) uint8 resized to (width, height) with area-aware resampling."""
    if pixels.shape[1] == size[0] and pixels.shape[0] == size[1]:
        return pixels
    method = Image.Resampling.BOX if (size[0] < pixels.shape[1]) else Image.Resampling.BICUBIC
    if pixels.ndim == 3 and pixels.shape[2] != 3:  # fluorescence channels: one by one
        planes = [
            np.asarray(Image.fromarray(p).resize(size, method)) for p in np.moveaxis(pixels, 2, 0)
        ]
        return np.stack(planes, axis=2)
    return np.asarray(Image.fromarray(pixels).resize(size, method))


def read_thumbnail(reader: SlideReader, max_px: int) -> tuple[np.ndarray, float]:
    """The whole slide with its longest side at most ``max_px``, and its level-0 downsample."""
    info = reader.info
    downsample = max(1.0, max(info.width, info.height) / max_px)
    out_w = max(1, math.floor(info.width / downsample))
    out_h = max(1, math.floor(info.height / downsample))
    level = best_level(reader, downsample)
    level_ds = info.level_downsamples[level]
    level_w, level_h = info.level_dimensions[level]
    ratio = level_ds / downsample  # thumbnail pixels per level pixel
    thumbnail = np.full((out_h, out_w, 3), 255, dtype=np.uint8)
    for by in range(0, level_h, BLOCK_PX):
        for bx in range(0, level_w, BLOCK_PX):
            bw, bh = min(BLOCK_PX, level_w - bx), min(BLOCK_PX, level_h - by)
            ox0, oy0 = math.floor(bx * ratio), math.floor(by * ratio)
            ox1 = min(out_w, math.floor((bx + bw) * ratio))
            oy1 = min(out_h, math.floor((by + bh) * ratio))
            if ox1 <= ox0 or oy1 <= oy0:
                continue
            l0_xy = (round(bx * level_ds), round(by * level_ds))
            block = reader.read_region(l0_xy, level, (bw, bh))
            thumbnail[oy0:oy1, ox0:ox1] = resize(block, (ox1 - ox0, oy1 - oy0))
    return thumbnail, info.width / out_w
