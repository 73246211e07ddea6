"""Evaluation jobs: the restored slide and classical baselines against the sharp original.

An evaluation job restores the original seen through the forward model
(:class:`~workers.engine.degraded.DegradedReader`). Besides the whole-area comparison
(:func:`workers.engine.reference.compare`), a sample of tissue tiles is also deconvolved
with the classical baselines given the true PSF (Richardson-Lucy, Wiener), so a lab sees
the model's figures next to theirs on its own scanner's tissue.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.training import baselines
from models.training.metrics import full_reference
from workers.engine.geometry import Box
from workers.engine.pipeline import read_padded
from workers.engine.readers import SlideReader
from workers.engine.tissue import TissueMap

SAMPLE_TILES = 12
SAMPLE_PX = 512
MARGIN_PX = 32
RICHARDSON_LUCY_ITERATIONS = 30
WIENER_BALANCE = 1e-2


def sample_boxes(area: Box, tissue: TissueMap | None, count: int = SAMPLE_TILES) -> list[Box]:
    """Up to ``count`` tissue boxes of ``SAMPLE_PX``, spread evenly over the area."""
    side = min(SAMPLE_PX, area.width, area.height)
    boxes = [
        Box(x, y, side, side)
        for y in range(area.y, area.bottom - side + 1, side)
        for x in range(area.x, area.right - side + 1, side)
    ]
    tissue_boxes = [b for b in boxes if tissue is None or tissue.fraction(b) >= 0.5]
    if len(tissue_boxes) <= count:
        return tissue_boxes
    picks = np.linspace(0, len(tissue_boxes) - 1, count).round().astype(int)
    return [tissue_boxes[i] for i in picks]


def compare_with_baselines(
    original: SlideReader,
    degraded: SlideReader,
    output: SlideReader,
    area: Box,
    psf: np.ndarray,
    boxes: list[Box],
) -> dict[str, Any]:
    """Mean PSNR, SSIM and PCC (RGB, 16 px border dropped) on the sample, per method."""
    scores: dict[str, list[dict[str, float]]] = {
        "input": [],
        "output": [],
        "richardson_lucy": [],
        "wiener": [],
    }
    m = MARGIN_PX
    for box in boxes:
        sharp = read_padded(original, box).astype(np.float32) / 255.0
        blurred = read_padded(degraded, box.expand(m)).astype(np.float32) / 255.0
        rel = box.relative_to(area)
        restored = output.read_region((rel.x, rel.y), 0, (rel.width, rel.height)) / 255.0
        candidates = {
            "input": blurred[m:-m, m:-m],
            "output": restored,
            "richardson_lucy": baselines.richardson_lucy(blurred, psf, RICHARDSON_LUCY_ITERATIONS)[
                m:-m, m:-m
            ],
            "wiener": baselines.wiener(blurred, psf, WIENER_BALANCE)[m:-m, m:-m],
        }
        for name, image in candidates.items():
            scores[name].append(full_reference(image, sharp))
    return {
        "tiles": len(boxes),
        "tile_px": boxes[0].width if boxes else 0,
        **{
            name: {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim", "pcc")}
            for name, rows in scores.items()
            if rows
        },
    }
