"""The one tiling implementation: chunk-aligned regions, and the tiles each region owns.

Regions split the work between tasks: disjoint boxes of ``region_px`` from the area's
corner. Each region is cut into abutting tile cores of ``tile_px`` from its own corner (a
remainder shorter than half a tile joins the core before it), so every tile lies in
exactly one region and runs exactly once. Each tile's model input adds ``halo_px`` of
context on every side: at least the model's receptive field (stated in its manifest), so
the core's output is what a pass over the whole slide would give there, and cores can
abut without blending.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from workers.engine.geometry import Box


@dataclass(frozen=True)
class Tile:
    """One model call: ``core`` is written to the output, ``read`` is fed to the model."""

    index: int
    region: int
    core: Box
    read: Box


def axis_cores(length: int, tile_px: int) -> list[tuple[int, int]]:
    """(start, size) of abutting cores along one axis of ``length``.

    Cores start at multiples of ``tile_px``; a last piece shorter than half a tile is
    added to the core before it instead of becoming a thin tile of its own.
    """
    starts = list(range(0, length, tile_px))
    if len(starts) > 1 and length - starts[-1] < tile_px // 2:
        starts.pop()
    ends = [*starts[1:], length]
    return [(start, end - start) for start, end in zip(starts, ends, strict=True)]


@dataclass(frozen=True)
class TileGrid:
    """Regions over ``area`` (level-0 pixels) and the abutting tiles that each one owns."""

    area: Box
    tile_px: int
    halo_px: int
    region_px: int
    scale: int = 1

    def __post_init__(self) -> None:
        if self.tile_px < 1 or self.halo_px < 0:
            raise ValueError("tile_px must be positive and halo_px not negative")
        if self.region_px < self.tile_px:
            raise ValueError("region_px must be at least tile_px")

    @cached_property
    def regions(self) -> list[Box]:
        """Disjoint region boxes (level-0 pixels) covering the area, row by row."""
        boxes = []
        for y in range(0, self.area.height, self.region_px):
            for x in range(0, self.area.width, self.region_px):
                width = min(self.region_px, self.area.width - x)
                height = min(self.region_px, self.area.height - y)
                boxes.append(Box(self.area.x + x, self.area.y + y, width, height))
        return boxes

    @cached_property
    def tiles(self) -> list[Tile]:
        """All tiles, region by region and row by row inside each region."""
        tiles: list[Tile] = []
        for index, region in enumerate(self.regions):
            for y, height in axis_cores(region.height, self.tile_px):
                for x, width in axis_cores(region.width, self.tile_px):
                    core = Box(region.x + x, region.y + y, width, height)
                    tiles.append(Tile(len(tiles), index, core, core.expand(self.halo_px)))
        return tiles

    @cached_property
    def _first_tile(self) -> list[int]:
        """Index of each region's first tile, and the tile count at the end."""
        firsts = [0] * (len(self.regions) + 1)
        for tile in self.tiles:
            firsts[tile.region + 1] = tile.index + 1
        return firsts

    def tiles_of(self, region_index: int) -> list[Tile]:
        """The tiles a region owns: their cores cover it exactly, without overlap."""
        return self.tiles[self._first_tile[region_index] : self._first_tile[region_index + 1]]

    def output_box(self, box: Box) -> Box:
        """A level-0 box in output-array pixels (origin at the area's corner, times scale)."""
        return box.relative_to(self.area).scaled(self.scale)
