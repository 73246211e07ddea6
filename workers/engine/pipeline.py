"""The processing pipeline as plain functions: plan a job, restore a region, finish the output.

Celery tasks call these; tests call them directly with numpy fakes for the reader and model.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from workers.engine import omezarr
from workers.engine.blending import Accumulator, tile_window
from workers.engine.geometry import Box
from workers.engine.readers import SlideReader
from workers.engine.thumbnails import read_thumbnail, resize
from workers.engine.tiling import Tile, TileGrid
from workers.engine.tissue import TissueMap, detect_tissue

TISSUE_THUMBNAIL_PX = 2048
MIN_TISSUE_FRACTION = 0.01


class Restorer(Protocol):
    """A model: float32 NCHW RGB in [0, 1] to the same layout, ``scale`` times larger."""

    scale: int

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Restore a batch of tiles."""
        ...


class JobCancelled(Exception):
    """Raised inside a region when the job was cancelled meanwhile."""


@dataclass(frozen=True)
class RegionResult:
    """What restoring one region did."""

    tiles_restored: int
    tiles_skipped: int
    seconds: float


def slide_box(reader: SlideReader) -> Box:
    """The whole level 0 of a slide."""
    return Box(0, 0, reader.info.width, reader.info.height)


def make_tissue_map(reader: SlideReader, max_px: int = TISSUE_THUMBNAIL_PX) -> TissueMap:
    """Detect tissue on a thumbnail of the slide."""
    thumbnail, downsample = read_thumbnail(reader, max_px)
    return TissueMap(detect_tissue(thumbnail), downsample)


def read_padded(reader: SlideReader, box: Box) -> np.ndarray:
    """Level-0 pixels of ``box``; parts outside the slide are mirrored from inside."""
    inside = box.intersect(slide_box(reader))
    if inside is None:
        raise ValueError(f"{box} lies outside the slide")
    pixels = reader.read_region((inside.x, inside.y), 0, (inside.width, inside.height))
    pad = (
        (inside.y - box.y, box.bottom - inside.bottom),
        (inside.x - box.x, box.right - inside.right),
        (0, 0),
    )
    if any(p for axis in pad for p in axis):
        pixels = np.pad(pixels, pad, mode="symmetric")
    return pixels


def _batches(items: list[Tile], size: int) -> Iterator[list[Tile]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def restore_region(
    reader: SlideReader,
    restorer: Restorer,
    grid: TileGrid,
    region_index: int,
    output: Path,
    tissue: TissueMap | None = None,
    batch_size: int = 4,
    should_stop: Callable[[], bool] = lambda: False,
) -> RegionResult:
    """Restore one region of the grid and write it to the level 0 of ``output``.

    Every tile whose core touches the region is run (or copied through when it is
    background), blended with normalised weights and cropped to the region, so the
    result equals a single pass over the whole area.
    """
    started = time.perf_counter()
    region = grid.regions[region_index]
    tiles = grid.tiles_touching(region)
    out_box = grid.output_box(region)
    restored = [
        t for t in tiles if tissue is None or tissue.fraction(t.core) >= MIN_TISSUE_FRACTION
    ]
    restored_ids = {t.index for t in restored}
    copied = [t for t in tiles if t.index not in restored_ids]
    if not restored:
        pixels = read_padded(reader, region)
        omezarr.write_box(output, out_box, resize(pixels, (out_box.width, out_box.height)))
        return RegionResult(0, len(tiles), time.perf_counter() - started)
    union = _bounding_box([t.read for t in tiles])
    source = TileSource(grid, union, read_padded(reader, union))
    accumulator = Accumulator(out_box, channels=3)
    for batch in _batches(restored, batch_size):
        if should_stop():
            raise JobCancelled
        predictions = restorer(source.model_input(batch))
        for tile, prediction in zip(batch, predictions, strict=True):
            accumulator.add(grid.output_box(tile.core), source.crop_halo(prediction), source.window)
    for tile in copied:
        accumulator.add(grid.output_box(tile.core), source.copy_through(tile), source.window)
    omezarr.write_box(output, out_box, accumulator.result())
    return RegionResult(len(restored), len(copied), time.perf_counter() - started)


class TileSource:
    """The pixels under a set of tiles, read once, cut into model inputs or copies."""

    def __init__(self, grid: TileGrid, union: Box, pixels: np.ndarray) -> None:
        self.grid, self.union, self.pixels = grid, union, pixels
        core = grid.tiles[0].core
        scale = grid.scale
        self.window = tile_window(core.height * scale, core.width * scale, grid.overlap_px * scale)

    def model_input(self, tiles: list[Tile]) -> np.ndarray:
        """Float32 NCHW batch in [0, 1] of the tiles' read boxes (core + halo)."""
        crops = [
            np.moveaxis(self.pixels[t.read.relative_to(self.union).slices()], 2, 0) for t in tiles
        ]
        return np.stack(crops).astype(np.float32) / 255.0

    def crop_halo(self, prediction: np.ndarray) -> np.ndarray:
        """A (channels, rows, cols) prediction as (rows, cols, channels) without its halo."""
        halo = self.grid.halo_px * self.grid.scale
        if halo:
            prediction = prediction[:, halo:-halo, halo:-halo]
        return np.moveaxis(prediction, 0, 2)

    def copy_through(self, tile: Tile) -> np.ndarray:
        """A background tile's core as it is (resized by the scale), in [0, 1]."""
        core = self.grid.output_box(tile.core)
        pixels = self.pixels[tile.core.relative_to(self.union).slices()]
        return resize(pixels, (core.width, core.height)).astype(np.float32) / 255.0


def _bounding_box(boxes: list[Box]) -> Box:
    x0, y0 = min(b.x for b in boxes), min(b.y for b in boxes)
    x1, y1 = max(b.right for b in boxes), max(b.bottom for b in boxes)
    return Box(x0, y0, x1 - x0, y1 - y0)


def finish_output(
    partial: Path,
    final: Path,
    name: str,
    mpp: tuple[float | None, float | None],
    provenance: dict[str, Any],
    chunk_px: int,
) -> list[tuple[int, int]]:
    """Build the lower pyramid levels, write the metadata, then move the store into place."""
    sizes = omezarr.build_pyramid(partial, chunk_px)
    omezarr.write_metadata(partial, name, sizes, mpp, provenance)
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return sizes
