"""Classify the blur of every tissue cell of a block: the classifier plus sharpness measures.

Each cell is probed with one classifier-sized square (of the cell's squares with the most
tissue, the one with the most grey-level contrast, so a cell at a tissue edge is judged on
its tissue, not on the edge), which
keeps classification a small share of restoring: a 256 px cell costs one 128 px call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from workers.engine import omezarr, sharpness
from workers.engine.blurmap import CellGrid
from workers.engine.geometry import Box
from workers.engine.pipeline import read_padded
from workers.engine.readers import SlideReader
from workers.engine.tissue import TissueMap

FEATURES = (
    "tissue",
    "p_in_focus",
    "p_defocus",
    "p_motion",
    "p_mixed",
    "extent",
    *sharpness.MEASURES,
)
MIN_CELL_TISSUE = 0.25
PROBABILITIES = slice(FEATURES.index("p_in_focus"), FEATURES.index("p_mixed") + 1)
EXTENT = FEATURES.index("extent")
_SHARPNESS = slice(FEATURES.index(sharpness.MEASURES[0]), None)


class BlurClassifier(Protocol):
    """A blur classifier: float32 NCHW RGB tiles in [0, 1] to class probabilities and extent."""

    tile_px: int

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities [N, 4] (in focus, defocus, motion, mixed) and extent [N] in px."""
        ...


@dataclass(frozen=True)
class BlockFeatures:
    """``FEATURES`` of each cell of a block, (rows, cols, features); NaN for background."""

    values: np.ndarray

    def save(self, path: Path) -> None:
        """Write atomically."""
        partial = path.with_suffix(".partial.npy")
        with partial.open("wb") as handle:
            np.save(handle, self.values)
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> BlockFeatures:
        """Read saved features."""
        return cls(np.load(path))


def probe_boxes(cell: Box, probe_px: int) -> list[Box]:
    """Candidate probe squares of a cell (one when the cell is no larger than a probe)."""
    xs = range(cell.x, max(cell.right - probe_px, cell.x) + 1, probe_px)
    ys = range(cell.y, max(cell.bottom - probe_px, cell.y) + 1, probe_px)
    return [Box(x, y, probe_px, probe_px) for y in ys for x in xs]


def _contrast(crop: np.ndarray) -> float:
    """Grey-level spread of a crop, estimated cheaply on every fourth pixel of one channel."""
    return float(crop[::4, ::4, 1 % crop.shape[2]].std())


def _choose_probe(
    pixels: np.ndarray, union: Box, boxes: list[Box], tissue: TissueMap | None
) -> np.ndarray:
    """The most contrasted of the squares with (nearly) the most tissue.

    Tissue first: a square across the tissue's edge has the most contrast of all, and its
    glass makes sharp tissue look soft to the classifier and to the sharpness measure.
    """
    fractions = [1.0 if tissue is None else tissue.fraction(b) for b in boxes]
    best = max(fractions)
    crops = [
        pixels[b.relative_to(union).slices()]
        for b, f in zip(boxes, fractions, strict=True)
        if f >= 0.9 * best
    ]
    return max(crops, key=_contrast)


def classify_block(
    reader: SlideReader,
    classifier: BlurClassifier,
    cells: CellGrid,
    block_index: int,
    tissue: TissueMap | None = None,
    batch_size: int = 32,
    copy_into: Path | None = None,
    levels: int = 1,
) -> BlockFeatures:
    """Features of every cell of one block (background cells left NaN).

    ``copy_into``: also write the block's pixels, as read, to that OME-Zarr's first
    ``levels`` levels (at the block's place in the area), so that untouched parts need no
    second read.
    """
    rows, cols = cells.blocks[block_index]
    block = cells.block_box(block_index)
    probe_px = classifier.tile_px
    union = Box(block.x, block.y, block.width + probe_px, block.height + probe_px)
    pixels = read_padded(reader, union)
    if copy_into is not None:
        copy = np.ascontiguousarray(pixels[: block.height, : block.width])
        omezarr.write_levels(copy_into, block.relative_to(cells.area), copy, levels)
    values = np.full((rows.stop - rows.start, cols.stop - cols.start, len(FEATURES)), np.nan)
    probes, where = [], []
    for i, row in enumerate(range(rows.start, rows.stop)):
        for j, col in enumerate(range(cols.start, cols.stop)):
            cell = cells.cell_box(row, col)
            fraction = 1.0 if tissue is None else tissue.fraction(cell)
            if fraction < MIN_CELL_TISSUE:
                continue
            probe = _choose_probe(pixels, union, probe_boxes(cell, probe_px), tissue)
            values[i, j, 0] = fraction
            values[i, j, _SHARPNESS] = list(sharpness.measure(probe).as_dict().values())
            probes.append(probe)
            where.append((i, j))
    for start in range(0, len(probes), batch_size):
        chunk = probes[start : start + batch_size]
        batch = np.stack([np.moveaxis(p, 2, 0) for p in chunk]).astype(np.float32) / 255.0
        probabilities, extent = classifier(batch)
        for (i, j), p, e in zip(
            where[start : start + batch_size], probabilities, extent, strict=True
        ):
            values[i, j, PROBABILITIES] = p
            values[i, j, EXTENT] = e
    return BlockFeatures(values)


def assemble_features(cells: CellGrid, blocks: list[BlockFeatures]) -> np.ndarray:
    """The features of all cells, (rows, cols, features), from every block's."""
    values = np.full((*cells.shape, len(FEATURES)), np.nan)
    for (rows, cols), block in zip(cells.blocks, blocks, strict=True):
        values[rows, cols] = block.values
    return values


def sharpness_under(features: np.ndarray, cells: CellGrid, box: Box) -> dict[str, float] | None:
    """Sharpness of the tissue under a box: its cells' measures weighted by overlap."""
    rows, cols = cells.cells_under(box)
    weights = cells.overlap_areas(box)
    block = features[rows, cols]
    tissue = ~np.isnan(block[..., 0])
    if not tissue.any():
        return None
    first = FEATURES.index(sharpness.MEASURES[0])
    values = np.average(block[tissue][:, first:], axis=0, weights=weights[tissue] + 1e-9)
    return dict(zip(sharpness.MEASURES, (float(v) for v in values), strict=True))
