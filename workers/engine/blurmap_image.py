"""The blur map as an RGBA PNG for viewers: each cell a square of pixels, blurred classes coloured.

In-focus and background cells are transparent, so the overlay marks only what is blurred;
cells are enlarged (nearest neighbour, at most 4096 px a side) so that a viewer's smoothing
softens only their edges.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from workers.engine.blurmap import CLASS_COLOURS, IN_FOCUS

MAX_SIDE_PX = 4096
MAX_CELL_PX = 8


def cell_px_for(shape: tuple[int, int]) -> int:
    """PNG pixels per cell side for a map of (rows, cols) cells."""
    return max(1, min(MAX_CELL_PX, MAX_SIDE_PX // max(shape)))


def overlay_rgba(classes: np.ndarray) -> np.ndarray:
    """(rows, cols, 4) colours of a class array: blurred classes coloured, the rest clear."""
    palette = np.array(CLASS_COLOURS, dtype=np.uint8)
    palette[IN_FOCUS] = 0  # transparent, and black so that premultiplying drawers add nothing
    rgba: np.ndarray = palette[np.clip(classes, 0, len(CLASS_COLOURS) - 1)]
    return rgba


def blur_map_png(classes: np.ndarray) -> bytes:
    """PNG bytes of a (rows, cols) class array, ``cell_px_for`` pixels per cell."""
    rgba = overlay_rgba(classes)
    factor = cell_px_for(classes.shape)
    rgba = rgba.repeat(factor, axis=0).repeat(factor, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()
