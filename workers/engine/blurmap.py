"""The blur map's grid: square cells of ``cell_px`` level-0 pixels over a job's area.

Cell (0, 0) starts at the area's corner, which is the output image's origin (the slide's
origin for a whole-slide job), so the map lies on the output with a scale only. Cells are
grouped into square blocks of ``block_cells`` per side: one classification task per block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.engine.geometry import Box

BACKGROUND, IN_FOCUS, DEFOCUS, MOTION, MIXED = range(5)
CLASS_NAMES = ("background", "in_focus", "defocus", "motion", "mixed")
CLASS_COLOURS = (
    (0, 0, 0, 0),
    (46, 160, 67, 96),
    (31, 119, 220, 160),
    (230, 120, 20, 160),
    (200, 40, 160, 160),
)


@dataclass(frozen=True)
class CellGrid:
    """Cells of ``cell_px`` over ``area`` (level-0 pixels); edge cells are clipped."""

    area: Box
    cell_px: int
    block_cells: int

    def __post_init__(self) -> None:
        if self.cell_px < 1 or self.cell_px & (self.cell_px - 1):
            raise ValueError("cell_px must be a power of two")

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of cells."""
        return math.ceil(self.area.height / self.cell_px), math.ceil(self.area.width / self.cell_px)

    def cell_box(self, row: int, col: int) -> Box:
        """Level-0 box of one cell, clipped to the area."""
        x, y = col * self.cell_px, row * self.cell_px
        width = min(self.cell_px, self.area.width - x)
        height = min(self.cell_px, self.area.height - y)
        return Box(self.area.x + x, self.area.y + y, width, height)

    @property
    def blocks(self) -> list[tuple[slice, slice]]:
        """(row slice, col slice) of cells of each block, row by row."""
        rows, cols = self.shape
        step = self.block_cells
        return [
            (slice(r, min(r + step, rows)), slice(c, min(c + step, cols)))
            for r in range(0, rows, step)
            for c in range(0, cols, step)
        ]

    def block_box(self, index: int) -> Box:
        """Level-0 box covering the cells of one block."""
        rows, cols = self.blocks[index]
        first = self.cell_box(rows.start, cols.start)
        last = self.cell_box(rows.stop - 1, cols.stop - 1)
        return Box(first.x, first.y, last.right - first.x, last.bottom - first.y)

    def cells_under(self, box: Box) -> tuple[slice, slice]:
        """(row slice, col slice) of the cells a level-0 box overlaps."""
        rows, cols = self.shape
        rel = box.relative_to(self.area)
        r0, c0 = max(rel.y // self.cell_px, 0), max(rel.x // self.cell_px, 0)
        r1 = min(math.ceil(rel.bottom / self.cell_px), rows)
        c1 = min(math.ceil(rel.right / self.cell_px), cols)
        return slice(r0, r1), slice(c0, c1)

    def overlap_areas(self, box: Box) -> np.ndarray:
        """Pixels of ``box`` inside each cell it overlaps (array over ``cells_under``)."""
        rows, cols = self.cells_under(box)
        areas = np.zeros((rows.stop - rows.start, cols.stop - cols.start), dtype=np.float64)
        for i, row in enumerate(range(rows.start, rows.stop)):
            for j, col in enumerate(range(cols.start, cols.stop)):
                inside = self.cell_box(row, col).intersect(box)
                areas[i, j] = inside.area if inside else 0.0
        return areas


@dataclass(frozen=True)
class BlurMap:
    """Per cell: class (``CLASS_NAMES`` index), confidence in [0, 1], blur extent in px.

    ``motion_psf`` (rows, cols, 2): the motion PSF (length px, 1.0 along x) of motion cells
    whose streak axis is clear, NaN elsewhere; None when not measured.
    """

    classes: np.ndarray
    confidence: np.ndarray
    extent: np.ndarray
    motion_psf: np.ndarray | None = None

    def save(self, path: Path) -> None:
        """Write atomically (a redelivered task may write it again)."""
        partial = path.with_suffix(".partial.npz")
        arrays = {"classes": self.classes, "confidence": self.confidence, "extent": self.extent}
        if self.motion_psf is not None:
            arrays["motion_psf"] = self.motion_psf
        np.savez(partial, **arrays)  # type: ignore[arg-type]  # numpy types allow_pickle only
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> BlurMap:
        """Read a saved map."""
        with np.load(path) as data:
            psf = data.get("motion_psf", None)
            return cls(data["classes"], data["confidence"], data["extent"], psf)
