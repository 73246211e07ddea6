"""A measure of seams: gradient energy across tile boundaries against that inside tiles.

A seam is a step between two neighbouring tiles' outputs, so it adds energy to the
gradient between the last pixel of one tile and the first of the next. Tissue makes the
ratio vary around 1 on its own, so compare an output's ratio with its input's ratio on
the same lines.
"""

from __future__ import annotations

import numpy as np

from workers.engine.tiling import TileGrid


def boundary_lines(grid: TileGrid) -> tuple[list[int], list[int]]:
    """Output columns and rows where a tile's core begins, other than the area's edges."""
    xs = {grid.output_box(t.core).x for t in grid.tiles}
    ys = {grid.output_box(t.core).y for t in grid.tiles}
    return sorted(xs - {0}), sorted(ys - {0})


def boundary_ratio(pixels: np.ndarray, xs: list[int], ys: list[int], period: int = 1) -> float:
    """Mean squared step across the lines (x - 1 to x, y - 1 to y) over the mean elsewhere.

    ``pixels`` is (rows, cols) or (rows, cols, channels); channels add up. ``period``: the
    output of an x``period`` model has a texture of that period (pixel shuffle), so the
    steps compared are only those at the boundaries' phase (x a multiple of ``period``).
    """
    image = pixels.astype(np.float64)
    if image.ndim == 2:
        image = image[..., None]
    across_cols = (np.diff(image, axis=1) ** 2).sum(axis=2)  # [:, x - 1]: x - 1 to x
    across_rows = (np.diff(image, axis=0) ** 2).sum(axis=2)
    on_cols = np.zeros(across_cols.shape[1], dtype=bool)
    on_rows = np.zeros(across_rows.shape[0], dtype=bool)
    on_cols[[x - 1 for x in xs]] = True
    on_rows[[y - 1 for y in ys]] = True
    in_cols = ((np.arange(on_cols.size) + 1) % period == 0) & ~on_cols
    in_rows = ((np.arange(on_rows.size) + 1) % period == 0) & ~on_rows
    boundary = np.concatenate([across_cols[:, on_cols].ravel(), across_rows[on_rows].ravel()])
    inside = np.concatenate([across_cols[:, in_cols].ravel(), across_rows[in_rows].ravel()])
    return float(boundary.mean() / max(inside.mean(), 1e-12))
