"""Compare a job's input and output with a reference scan of the same tissue.

The reference (a slow or in-focus rescan) is registered to the input by a translation:
phase correlation on thumbnails, refined to a tenth of a pixel on a level-0 crop at the
area's centre (``skimage.registration.phase_cross_correlation``). PSNR, SSIM and Pearson's
correlation (PCC) of grey levels are then accumulated chunk by chunk over the job's area
(``skimage.metrics``), so memory stays bounded whatever the slide's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity
from skimage.registration import phase_cross_correlation

from workers.engine.geometry import Box
from workers.engine.pipeline import read_padded
from workers.engine.readers import SlideReader
from workers.engine.sharpness import grey
from workers.engine.thumbnails import read_thumbnail

THUMBNAIL_PX = 1024
REFINE_PX = 1024
CHUNK_PX = 1024


def register(reader: SlideReader, reference: SlideReader, area: Box) -> tuple[float, float]:
    """(dx, dy) in level-0 pixels such that ``reference`` at (x + dx, y + dy) shows input (x, y)."""
    thumb, down = read_thumbnail(reader, THUMBNAIL_PX)
    ref_thumb, ref_down = read_thumbnail(reference, THUMBNAIL_PX)
    rows = min(thumb.shape[0], ref_thumb.shape[0])
    cols = min(thumb.shape[1], ref_thumb.shape[1])
    coarse, _, _ = phase_cross_correlation(
        grey(ref_thumb[:rows, :cols]), grey(thumb[:rows, :cols]), normalization=None
    )
    dy, dx = (float(v) * max(down, ref_down) for v in coarse)
    side = min(REFINE_PX, area.width, area.height)
    crop = Box(area.x + (area.width - side) // 2, area.y + (area.height - side) // 2, side, side)
    moved = Box(crop.x + round(dx), crop.y + round(dy), side, side)
    fine, _, _ = phase_cross_correlation(
        grey(read_padded(reference, moved)),
        grey(read_padded(reader, crop)),
        upsample_factor=10,
        normalization=None,
    )
    return round(dx) + float(fine[1]), round(dy) + float(fine[0])


@dataclass
class _Sums:
    """Running sums for PSNR and PCC, and pixel-weighted SSIM."""

    pixels: float = 0.0
    squared_error: float = 0.0
    ssim_weighted: float = 0.0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0

    def add(self, image: np.ndarray, reference: np.ndarray) -> None:
        n = float(image.size)
        self.pixels += n
        self.squared_error += float(((image - reference) ** 2).sum())
        if min(image.shape) >= 7:
            self.ssim_weighted += n * float(structural_similarity(image, reference, data_range=1.0))
        self.sx += float(image.sum())
        self.sy += float(reference.sum())
        self.sxx += float((image * image).sum())
        self.syy += float((reference * reference).sum())
        self.sxy += float((image * reference).sum())

    def result(self) -> dict[str, float]:
        n = max(self.pixels, 1.0)
        mse = self.squared_error / n
        cov = self.sxy / n - (self.sx / n) * (self.sy / n)
        var_x = self.sxx / n - (self.sx / n) ** 2
        var_y = self.syy / n - (self.sy / n) ** 2
        return {
            "psnr_db": float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf"),
            "ssim": self.ssim_weighted / n,
            "pcc": cov / float(np.sqrt(max(var_x * var_y, 1e-18))),
        }


def compare(
    reader: SlideReader,
    output: SlideReader,
    reference: SlideReader,
    area: Box,
    shift: tuple[float, float],
) -> dict[str, Any]:
    """PSNR, SSIM and PCC (grey, in [0, 1]) of input and output against the registered reference.

    ``output`` is the job's level 0 (its origin at the area's corner). Only the part of
    the area whose shifted reference lies on the reference slide counts.
    """
    dx, dy = round(shift[0]), round(shift[1])
    ref_box = Box(0, 0, reference.info.width, reference.info.height)
    sums = {"input": _Sums(), "output": _Sums()}
    for y in range(area.y, area.bottom, CHUNK_PX):
        for x in range(area.x, area.right, CHUNK_PX):
            chunk = Box(x, y, min(CHUNK_PX, area.right - x), min(CHUNK_PX, area.bottom - y))
            moved = Box(chunk.x + dx, chunk.y + dy, chunk.width, chunk.height).intersect(ref_box)
            if moved is None:
                continue
            chunk = Box(moved.x - dx, moved.y - dy, moved.width, moved.height)
            expected = grey(
                reference.read_region((moved.x, moved.y), 0, (moved.width, moved.height))
            )
            before = grey(reader.read_region((chunk.x, chunk.y), 0, (chunk.width, chunk.height)))
            rel = chunk.relative_to(area)
            after = grey(output.read_region((rel.x, rel.y), 0, (rel.width, rel.height)))
            sums["input"].add(before, expected)
            sums["output"].add(after, expected)
    return {
        "shift_px": [round(shift[0], 2), round(shift[1], 2)],
        **{name: s.result() for name, s in sums.items()},
    }
