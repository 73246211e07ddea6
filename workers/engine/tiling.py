"""The one tiling implementation: tiles (core + halo) and chunk-aligned regions of an area.

Cores overlap by ``overlap_px`` so that blending hides seams; each read box adds
``halo_px`` of context on every side, which the model sees and the blend discards.
Regions split the work between tasks: each region's output is a disjoint, chunk-aligned
box, and a region processes every tile whose core touches it, so its result equals what
one pass over the whole area would give.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from workers.engine.geometry import Box


@dataclass(frozen=True)
class Tile:
    """One model call: ``core`` is blended into the output, ``read`` is fed to the model."""

    index: int
    core: Box
    read: Box


def axis_starts(length: int, core_px: int, overlap_px: int) -> list[int]:
    """Start offsets of cores along one axis; the last core ends exactly at ``length``."""
    if length <= core_px:
        return [0]
    stride = core_px - overlap_px
    starts = list(range(0, length - core_px, stride))
    starts.append(length - core_px)
    return starts


@dataclass(frozen=True)
class TileGrid:
    """Overlapping tiles over ``area`` (level-0 pixels) and the regions that own them."""

    area: Box
    tile_px: int
    overlap_px: int
    halo_px: int
    region_px: int
    scale: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.overlap_px < self.tile_px:
            raise ValueError("overlap_px must be >= 0 and smaller than tile_px")
        if self.region_px < self.tile_px:
            raise ValueError("region_px must be at least tile_px")

    @property
    def core_size(self) -> tuple[int, int]:
        """Core (width, height); smaller than ``tile_px`` only for a small area."""
        return min(self.tile_px, self.area.width), min(self.tile_px, self.area.height)

    @cached_property
    def tiles(self) -> list[Tile]:
        """All tiles, row by row."""
        core_w, core_h = self.core_size
        xs = axis_starts(self.area.width, core_w, self.overlap_px)
        ys = axis_starts(self.area.height, core_h, self.overlap_px)
        tiles: list[Tile] = []
        for y in ys:
            for x in xs:
                core = Box(self.area.x + x, self.area.y + y, core_w, core_h)
                tiles.append(Tile(len(tiles), core, core.expand(self.halo_px)))
        return tiles

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

    def output_box(self, box: Box) -> Box:
        """A level-0 box in output-array pixels (origin at the area's corner, times scale)."""
        return box.relative_to(self.area).scaled(self.scale)

    def tiles_touching(self, region: Box) -> list[Tile]:
        """Tiles whose core overlaps ``region``: all a region needs for an exact blend."""
        return [tile for tile in self.tiles if tile.core.intersect(region) is not None]

    @staticmethod
    def owns(region: Box, tile: Tile) -> bool:
        """Whether a tile's core centre lies in the region: each tile has one owner."""
        return region.contains_point(
            tile.core.x + tile.core.width / 2, tile.core.y + tile.core.height / 2
        )

    def owned_tile_count(self, region_index: int) -> int:
        """Tiles whose core centre lies in the region: counts each tile exactly once."""
        region = self.regions[region_index]
        return sum(self.owns(region, t) for t in self.tiles)
