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


def _crop_halo(prediction: np.ndarray, halo_out: int) -> np.ndarray:
    """(channels, rows, cols) prediction to (rows, cols, channels) without its halo."""
    if halo_out:
        prediction = prediction[:, halo_out:-halo_out, halo_out:-halo_out]
    return np.moveaxis(prediction, 0, 2)


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
    is_tissue = {
        t.index: tissue is None or tissue.fraction(t.core) >= MIN_TISSUE_FRACTION for t in tiles
    }
    if not any(is_tissue.values()):
        pixels = read_padded(reader, region)
        omezarr.write_box(output, out_box, resize(pixels, (out_box.width, out_box.height)))
        return RegionResult(0, len(tiles), time.perf_counter() - started)

    union = _bounding_box([t.read for t in tiles])
    source = read_padded(reader, union)
    accumulator = Accumulator(out_box, channels=3)
    scale = grid.scale
    window = tile_window(
        tiles[0].core.height * scale, tiles[0].core.width * scale, grid.overlap_px * scale
    )
    halo_out = grid.halo_px * scale

    def tile_pixels(tile: Tile) -> np.ndarray:
        return source[tile.read.relative_to(union).slices()]

    restored = [t for t in tiles if is_tissue[t.index]]
    for batch in _batches(restored, batch_size):
        if should_stop():
            raise JobCancelled
        inputs = np.stack([np.moveaxis(tile_pixels(t), 2, 0) for t in batch])
        predictions = restorer(inputs.astype(np.float32) / 255.0)
        for tile, prediction in zip(batch, predictions, strict=True):
            core = grid.output_box(tile.core)
            accumulator.add(core, _crop_halo(prediction, halo_out), window)
    for tile in tiles:
        if not is_tissue[tile.index]:
            core = grid.output_box(tile.core)
            copied = resize(
                source[tile.core.relative_to(union).slices()], (core.width, core.height)
            )
            accumulator.add(core, copied.astype(np.float32) / 255.0, window)
    omezarr.write_box(output, out_box, accumulator.result())
    return RegionResult(len(restored), len(tiles) - len(restored), time.perf_counter() - started)


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
