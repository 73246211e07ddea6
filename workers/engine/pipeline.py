"""The processing pipeline as plain functions: plan a job, restore a region, finish the output.

Celery tasks call these; tests call them directly with numpy fakes for the reader and model.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from workers.engine import omezarr
from workers.engine.blending import Accumulator, Canvas
from workers.engine.geometry import Box, bounding_box
from workers.engine.readers import ArrayReader, SlideReader
from workers.engine.shared_inputs import SharedInput, merge_sources
from workers.engine.thumbnails import read_thumbnail, resize
from workers.engine.tile_source import TileRecord, TileSource, inside_weight
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


class TilePlan(Protocol):
    """Which restorer runs on each tile, on which pixels, and where its output is used.

    ``input_in_output``: the output already holds the input's pixels (written while
    classifying), so a region without restored tiles needs no copy. ``overlay_ramp_px``:
    None lays restored and copied tiles side by side, as one pass would; a number lays
    the restored pixels over the input, rising from 0 at their edge over that many pixels.
    ``grow_px``: how far a source box may grow to take in the blur around it.
    """

    @property
    def input_in_output(self) -> bool:
        """Whether the output already holds the input's pixels."""
        ...

    @property
    def overlay_ramp_px(self) -> int | None:
        """Ramp of restored pixels laid over the input, or None to lay tiles side by side."""
        ...

    @property
    def grow_px(self) -> int:
        """How far a source box grows before its sharp margins are trimmed."""
        ...

    def restorer_for(self, tile: Tile) -> Restorer | None:
        """The restorer of one tile, or None to copy the tile through untouched."""
        ...

    def source_box(self, tile: Tile, read: Box) -> Box | None:
        """The part of the read box the model should see (the rest is mirrored from it)."""
        ...


@dataclass(frozen=True)
class UniformPlan:
    """One restorer on every tissue tile (every tile without a tissue map)."""

    restorer: Restorer
    tissue: TissueMap | None = None
    input_in_output: bool = False
    overlay_ramp_px: int | None = None
    grow_px: int = 0

    def restorer_for(self, tile: Tile) -> Restorer | None:
        """The restorer, or None for background."""
        if self.tissue is None or self.tissue.fraction(tile.core) >= MIN_TISSUE_FRACTION:
            return self.restorer
        return None

    def source_box(self, tile: Tile, read: Box) -> Box | None:
        """The model sees the whole read box."""
        return None


class Chain:
    """Restorers applied one after the other (e.g. motion, then defocus)."""

    def __init__(self, restorers: list[Restorer]) -> None:
        self.restorers = restorers
        self.scale = int(np.prod([r.scale for r in restorers]))
        self.halo_px = max(getattr(r, "halo_px", 0) for r in restorers)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run every restorer in turn, clipping to [0, 1] in between."""
        for restorer in self.restorers:
            batch = np.clip(restorer(batch), 0.0, 1.0)
        return batch


class JobCancelled(Exception):
    """Raised inside a region when the job was cancelled meanwhile."""


@dataclass(frozen=True)
class RegionResult:
    """What restoring one region did."""

    tiles_restored: int
    tiles_skipped: int
    seconds: float
    tiles: list[TileRecord] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)


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
    return mirror_to(pixels, inside, box)


def mirror_to(pixels: np.ndarray, inside: Box, box: Box) -> np.ndarray:
    """The pixels of ``inside`` grown to ``box`` (which holds it) by mirroring them."""
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


def _model_calls(
    group: list[Tile],
    sources: dict[int, Box | None],
    batch_size: int,
    batch_px: int,
    scale: int,
    halo_px: int,
) -> Iterator[list[SharedInput]]:
    """Batches of whole tiles of one size, then the tiles' source boxes, merged where they abut.

    A model call holds at most ``batch_size`` tiles and, past its first tile, at most
    ``batch_px`` output pixels: a model's memory grows with the pixels it produces. A merged
    source box holds at most one tile's input plus ``batch_px`` output pixels.
    """
    sizes: dict[tuple[int, int], list[Tile]] = {}
    for tile in group:
        if sources[tile.index] is None:
            sizes.setdefault((tile.read.width, tile.read.height), []).append(tile)
    for (width, height), same_size in sizes.items():
        fits = batch_px // (width * height * scale * scale)
        for batch in _batches(same_size, max(1, min(batch_size, fits))):
            yield [SharedInput(None, (tile.index,)) for tile in batch]
    boxed = {index: box for index, box in sources.items() if box is not None}
    if boxed:
        tile_px = max(tile.core.expand(halo_px).area for tile in group)
        for shared in merge_sources(boxed, tile_px + batch_px // (scale * scale), halo_px):
            yield [shared]


def restore_region(
    reader: SlideReader,
    plan: TilePlan,
    grid: TileGrid,
    region_index: int,
    output: Path,
    batch_size: int = 4,
    batch_px: int = 1_500_000,
    should_stop: Callable[[], bool] = lambda: False,
    levels: int = 1,
    progress: Callable[[int], None] = lambda tiles_done: None,
) -> RegionResult:
    """Restore one region of the grid and write it to ``output`` (``levels`` pyramid levels).

    Every tile the region owns is run once through its planned restorer (or copied
    through) and laid into the region; copied tiles come out bit-identical to the input.
    ``progress`` hears how many of the region's tiles are finished after each model call.
    """
    clock = StageClock()
    out_box, pixels, result = restore_region_pixels(
        reader, plan, grid, region_index, batch_size, batch_px, should_stop, progress, clock
    )
    if pixels is None:
        return result
    with clock("write"):
        omezarr.write_levels(output, out_box, pixels, levels)
    return clock.result(result.tiles_restored, result.tiles_skipped, result.tiles)


def restore_region_pixels(
    reader: SlideReader,
    plan: TilePlan,
    grid: TileGrid,
    region_index: int,
    batch_size: int = 4,
    batch_px: int = 1_500_000,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Callable[[int], None] = lambda tiles_done: None,
    clock: StageClock | None = None,
) -> tuple[Box, np.ndarray | None, RegionResult]:
    """What :func:`restore_region` writes: the output box, its pixels, the result so far.

    The pixels are None when the output already holds them (a plan whose output holds its
    input, with no tile to restore). ``clock`` times the stages (a fresh one when None).
    """
    clock = clock or StageClock()
    region = grid.regions[region_index]
    tiles = grid.tiles_of(region_index)
    out_box = grid.output_box(region)
    planned = [(t, plan.restorer_for(t)) for t in tiles]
    groups: dict[int, tuple[Restorer, list[Tile]]] = {}
    for tile, restorer in planned:
        if restorer is not None:
            groups.setdefault(id(restorer), (restorer, []))[1].append(tile)
    copied = [t for t, r in planned if r is None]
    records = {t.index: TileRecord(t.index, False) for t in tiles}
    if not groups and plan.input_in_output:
        return out_box, None, clock.result(0, len(tiles), [records[i] for i in sorted(records)])
    if not groups:
        with clock("read"):
            pixels = resize(read_padded(reader, region), (out_box.width, out_box.height))
        return out_box, pixels, clock.result(0, len(tiles), [records[i] for i in sorted(records)])
    target, reads = region, [t.read for t in tiles]
    if plan.input_in_output:  # only the part the restored tiles reach is read and rewritten
        runs = [t for _, group in groups.values() for t in group]
        target = _aligned(bounding_box([t.core for t in runs]), grid.area, region)
        reads = [t.read for t in runs] + [target]
    out_box = grid.output_box(target)
    union = bounding_box(reads)
    with clock("read"):
        source = TileSource(grid, union, read_padded(reader, union))
    ramp_px = plan.overlay_ramp_px if grid.scale == 1 else None
    finished = len(copied)
    channels = source.pixels.shape[2]
    accumulator: Accumulator | Canvas = (
        Canvas(out_box, channels) if ramp_px is None else Accumulator(out_box, channels)
    )
    for restorer, group in groups.values():
        halo = min(getattr(restorer, "halo_px", grid.halo_px), grid.halo_px)
        sources: dict[int, Box | None] = {}
        for tile in group:
            read = tile.core.expand(halo)
            sources[tile.index] = source.refined(plan.source_box(tile, read), read, plan.grow_px)
        tiles_by_index = {tile.index: tile for tile in group}
        for call in _model_calls(group, sources, batch_size, batch_px, restorer.scale, halo):
            if should_stop():
                raise JobCancelled
            firsts = [tiles_by_index[shared.tiles[0]] for shared in call]
            with clock("restore"):
                predictions = restorer(
                    source.model_input(firsts, halo, [shared.box for shared in call])
                )
            for shared, prediction in zip(call, predictions, strict=True):
                output = source.crop_halo(prediction, halo)
                for index in shared.tiles:
                    tile, own = tiles_by_index[index], sources[index]
                    restored, used, weight = output, tile.core, None
                    if shared.box is not None and own is not None:
                        used = own.intersect(tile.core) or tile.core
                        restored = source.place(tile, shared.box, output)
                        weight = inside_weight(tile.core, used)
                    with clock("blend"):
                        accumulator.add(grid.output_box(tile.core), restored, weight)
                    with clock("measure"):
                        records[index] = source.record(tile, used, restored)
                finished += len(shared.tiles)
            progress(finished)
    with clock("blend"):
        if isinstance(accumulator, Canvas):
            for tile in copied:
                accumulator.add(grid.output_box(tile.core), source.copy_through(tile))
            pixels = accumulator.result()
        else:
            pixels = accumulator.result_over(source.original(target), ramp_px or 0)
    ordered = [records[i] for i in sorted(records)]
    return out_box, pixels, clock.result(len(tiles) - len(copied), len(copied), ordered)


def restore_image(
    pixels: np.ndarray,
    restorer: Restorer,
    tile_px: int,
    halo_px: int,
    batch_size: int = 4,
    batch_px: int = 1_500_000,
) -> np.ndarray:
    """Restore an in-memory image with the same tiles, halos and blending as a slide.

    Args:
        pixels: uint8 (rows, cols) or (rows, cols, channels). The restorer sees the
            channels as given: a grey frame goes through as one channel (enough for a
            1-channel model such as ``sr-x2``, which would otherwise restore three copies).
        restorer: The model (any ``scale``).
        tile_px: Tile side of the model, from its manifest.
        halo_px: Context around each tile, from its manifest.
        batch_size: Tiles per model call at most.
        batch_px: Output pixels per model call at most (past the first tile).

    Returns:
        uint8 of the input's layout, ``restorer.scale`` times larger.

    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError(f"restore_image takes uint8 (rows, cols[, channels]), not {pixels.dtype}")
    reader = ArrayReader(pixels if pixels.ndim == 3 else pixels[..., None])
    side = max(reader.info.width, reader.info.height, tile_px)
    grid = TileGrid(slide_box(reader), tile_px, halo_px, region_px=side, scale=restorer.scale)
    _, restored, _ = restore_region_pixels(
        reader, UniformPlan(restorer), grid, 0, batch_size, batch_px
    )
    assert restored is not None  # every tile has a restorer
    return restored if pixels.ndim == 3 else restored[..., 0]


class StageClock:
    """Seconds spent per named stage of a region, and the region's total."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stages: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        """Time the block as ``stage``."""
        begin = time.perf_counter()
        try:
            yield
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - begin

    def result(self, restored: int, skipped: int, records: list[TileRecord]) -> RegionResult:
        """The region's result with its timings."""
        seconds = time.perf_counter() - self.started
        return RegionResult(restored, skipped, seconds, records, dict(self.stages))


ALIGN_PX = 256  # level-0 alignment of a partly rewritten region (even at every level it owns)


def _aligned(box: Box, area: Box, region: Box) -> Box:
    """``box`` grown to multiples of ``ALIGN_PX`` from the area's corner, within ``region``."""
    rel = box.relative_to(area)
    x0, y0 = rel.x // ALIGN_PX * ALIGN_PX, rel.y // ALIGN_PX * ALIGN_PX
    x1 = -(-rel.right // ALIGN_PX) * ALIGN_PX
    y1 = -(-rel.bottom // ALIGN_PX) * ALIGN_PX
    grown = Box(area.x + x0, area.y + y0, x1 - x0, y1 - y0)
    inside = grown.intersect(region)
    assert inside is not None
    return inside


def finish_output(
    partial: Path,
    final: Path,
    name: str,
    mpp: tuple[float | None, float | None],
    provenance: dict[str, Any],
    chunk_px: int,
    first_level: int = 1,
    progress: Callable[[], None] = lambda: None,
    channels: list[dict[str, str]] | None = None,
) -> list[tuple[int, int]]:
    """Build the pyramid levels from ``first_level``, write the metadata, move the store."""
    sizes = omezarr.build_pyramid(partial, chunk_px, first_level, progress)
    omezarr.write_metadata(partial, name, sizes, mpp, provenance, channels)
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return sizes
