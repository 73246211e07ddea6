"""Where a continuous-stage scan puts its frames, before registration corrects them.

Frames arrive in acquisition order. Row 0 is the top row and starts at the left (+x right,
+y down); with ``scan_axis`` "x" each row lies ``row_step_px`` below the previous one and, when
``serpentine``, odd rows run right to left. With ``scan_axis`` "y" the axes swap: strips run top
to bottom, each ``row_step_px`` right of the previous one, odd strips bottom to top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

MIN_OVERLAP_FRACTION = 1 / 8  # of the frame along both axes, for frames of adjacent rows


@dataclass(frozen=True)
class ScanLayout:
    """A grid of overlapping frames taken while the stage moves along ``scan_axis``."""

    rows: int
    frames_per_row: int
    serpentine: bool
    step_px: float
    row_step_px: float
    scan_axis: Literal["x", "y"]
    frame_size: tuple[int, int]

    @property
    def count(self) -> int:
        """Number of frames."""
        return self.rows * self.frames_per_row

    def nominal_positions(self) -> np.ndarray:
        """(count, 2) float64 (x, y) of each frame's top-left corner, in acquisition order."""
        index = np.arange(self.count)
        row, col = np.divmod(index, self.frames_per_row)
        if self.serpentine:
            col = np.where(row % 2 == 1, self.frames_per_row - 1 - col, col)
        along = col * float(self.step_px)
        across = row * float(self.row_step_px)
        pairs = (along, across) if self.scan_axis == "x" else (across, along)
        return np.stack(pairs, axis=1).astype(np.float64)

    def neighbour_pairs(self) -> list[tuple[int, int]]:
        """(i, j), i < j: consecutive frames of a row, and overlapping frames of adjacent rows."""
        n = self.frames_per_row
        pairs = [(r * n + c, r * n + c + 1) for r in range(self.rows) for c in range(n - 1)]
        positions = self.nominal_positions()
        for row in range(1, self.rows):
            previous = np.arange((row - 1) * n, row * n)
            for j in range(row * n, (row + 1) * n):
                close = self._overlapping(positions[previous], positions[j])
                pairs.extend((int(i), j) for i in previous[close])
        return sorted(pairs)

    def _overlapping(self, others: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Which of ``others`` (k, 2) overlap a frame at ``position`` enough to register."""
        size = np.asarray(self.frame_size, dtype=np.float64)
        overlap = size - np.abs(others - position)
        close: np.ndarray = np.all(overlap >= size * MIN_OVERLAP_FRACTION, axis=1)
        return close
