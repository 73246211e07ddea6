"""Neighbouring source boxes of one model merged into one model input.

Routing gives each restored tile the blurred box under its core. A blurred patch that
spans several tiles would otherwise run as several model calls, each with its own halo
of mirrored context around a piece of the patch: more pixels through the model, and a
PSF estimated from less of the patch. Boxes whose bounding box they nearly fill are run
as one input instead; each tile still takes the output only inside its own box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.engine.geometry import Box, bounding_box

FILL_TOLERANCE = 0.05  # a merged box may hold up to this share of pixels outside its boxes


@dataclass(frozen=True)
class SharedInput:
    """One model input: ``box`` (None: each tile's own read box) and the tiles it serves."""

    box: Box | None
    tiles: tuple[int, ...]


def merge_sources(boxes: dict[int, Box], max_input_px: int, halo_px: int) -> list[SharedInput]:
    """Tile boxes merged into the fewest inputs that stay nearly filled and within budget.

    Args:
        boxes: Each tile's source box (level 0), by tile index.
        max_input_px: Most pixels one input may hold, halo included.
        halo_px: Context mirrored around every input.

    Returns:
        Inputs in the order of their first tile; every tile index appears in exactly one.

    """
    groups: list[tuple[Box, tuple[int, ...]]] = [(box, (i,)) for i, box in sorted(boxes.items())]
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                candidate = bounding_box([groups[i][0], groups[j][0]])
                tiles = groups[i][1] + groups[j][1]
                if _fits(candidate, [boxes[t] for t in tiles], max_input_px, halo_px):
                    groups[i] = (candidate, tuple(sorted(tiles)))
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return [SharedInput(box, tiles) for box, tiles in sorted(groups, key=lambda g: g[1][0])]


def _fits(candidate: Box, boxes: list[Box], max_input_px: int, halo_px: int) -> bool:
    """Whether the boxes fill ``candidate`` nearly and it stays within the budget."""
    padded = (candidate.width + 2 * halo_px) * (candidate.height + 2 * halo_px)
    if padded > max_input_px:
        return False
    covered = np.zeros((candidate.height, candidate.width), dtype=bool)
    for box in boxes:
        covered[box.relative_to(candidate).slices()] = True
    return bool(covered.mean() >= 1.0 - FILL_TOLERANCE)
