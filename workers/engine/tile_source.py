"""The pixels under a region's tiles, read once: model inputs, placed outputs, records."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workers.engine import sharpness
from workers.engine.geometry import Box
from workers.engine.thumbnails import resize
from workers.engine.tiling import Tile, TileGrid

MEASURE_PX = 256


@dataclass(frozen=True)
class TileRecord:
    """What happened to one tile owned by a region (sharpness measured where restored)."""

    index: int
    restored: bool
    sharpness_before: dict[str, float] | None = None
    sharpness_after: dict[str, float] | None = None


class TileSource:
    """The pixels under a set of tiles, read once, cut into model inputs or copies."""

    def __init__(self, grid: TileGrid, union: Box, pixels: np.ndarray) -> None:
        self.grid, self.union, self.pixels = grid, union, pixels

    def model_input(self, tiles: list[Tile], halo_px: int, sources: list[Box | None]) -> np.ndarray:
        """Float32 NCHW batch in [0, 1]: each tile's core plus ``halo_px`` of context.

        A tile with a source box gets that box instead, with ``halo_px`` mirrored around it,
        so a model that estimates its PSF from its whole input sees only that box (and
        spends no time on the rest of the tile).
        """
        crops = []
        for tile, box in zip(tiles, sources, strict=True):
            if box is None:
                crop = self.pixels[tile.core.expand(halo_px).relative_to(self.union).slices()]
            else:
                pad = ((halo_px, halo_px), (halo_px, halo_px), (0, 0))
                crop = np.pad(self.pixels[box.relative_to(self.union).slices()], pad, "symmetric")
            crops.append(np.moveaxis(crop, 2, 0))
        return np.stack(crops).astype(np.float32) / 255.0

    def refined(self, box: Box | None, within: Box, grow_px: int) -> Box | None:
        """The blurred extent around a source box, to the block rather than the cell.

        The box grows by ``grow_px`` on each side (inside ``within``), then loses the edge
        lines of blocks much sharper than the box itself (:func:`sharpness.soft_core`):
        cut at cell boundaries, a blurred patch both leaves out partly blurred cells and
        carries sharp margins, which spoil a deblurring model's estimate of the PSF.
        """
        if box is None:
            return None
        grown = box.expand(grow_px).intersect(within)
        if grown is None:
            return None
        known = box.intersect(grown) or grown
        offset = known.relative_to(grown)
        rows, cols = sharpness.soft_core(self.original(grown), reference=offset.slices())
        return Box(
            grown.x + cols.start,
            grown.y + rows.start,
            cols.stop - cols.start,
            rows.stop - rows.start,
        )

    def place(self, tile: Tile, box: Box, restored: np.ndarray) -> np.ndarray:
        """A prediction over ``box`` laid into a core-sized array (zero outside the box)."""
        core = np.zeros((tile.core.height, tile.core.width, restored.shape[2]), np.float32)
        inside = box.intersect(tile.core)
        if inside is not None:
            core[inside.relative_to(tile.core).slices()] = restored[
                inside.relative_to(box).slices()
            ]
        return core

    def original(self, box: Box) -> np.ndarray:
        """The input pixels of a level-0 box inside the union."""
        return self.pixels[box.relative_to(self.union).slices()]

    def crop_halo(self, prediction: np.ndarray, halo_px: int) -> np.ndarray:
        """A (channels, rows, cols) prediction as (rows, cols, channels) without its halo."""
        halo = halo_px * self.grid.scale
        if halo:
            prediction = prediction[:, halo:-halo, halo:-halo]
        return np.moveaxis(prediction, 0, 2)

    def record(self, tile: Tile, used: Box, restored: np.ndarray) -> TileRecord:
        """A restored tile's record: sharpness before and after where its output is used.

        Measured on the central ``MEASURE_PX`` square of that box, which keeps measuring a
        small share of restoring.
        """
        area = _central(used, MEASURE_PX)
        before = self.pixels[area.relative_to(self.union).slices()]
        scaled = area.relative_to(tile.core).scaled(self.grid.scale)
        after = np.clip(restored[scaled.slices()], 0.0, 1.0)
        return TileRecord(
            tile.index,
            True,
            sharpness.measure(before).as_dict(),
            sharpness.measure(after).as_dict(),
        )

    def copy_through(self, tile: Tile) -> np.ndarray:
        """A background tile's core as it is (resized by the scale), in [0, 1]."""
        core = self.grid.output_box(tile.core)
        pixels = self.pixels[tile.core.relative_to(self.union).slices()]
        return resize(pixels, (core.width, core.height)).astype(np.float32) / 255.0


def _central(box: Box, side_px: int) -> Box:
    """The central square of at most ``side_px`` of a box."""
    width, height = min(box.width, side_px), min(box.height, side_px)
    return Box(box.x + (box.width - width) // 2, box.y + (box.height - height) // 2, width, height)


def inside_weight(core: Box, box: Box) -> np.ndarray:
    """1 where a core's pixels lie in ``box``, else 0 (rows, cols)."""
    weight = np.zeros((core.height, core.width), dtype=np.float32)
    inside = box.intersect(core)
    if inside is not None:
        weight[inside.relative_to(core).slices()] = 1.0
    return weight
