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

from workers.engine import omezarr, sharpness
from workers.engine.blending import Accumulator, tile_window
from workers.engine.geometry import Box
from workers.engine.readers import SlideReader
from workers.engine.thumbnails import read_thumbnail, resize
from workers.engine.tiling import Tile, TileGrid
from workers.engine.tissue import TissueMap, detect_tissue

TISSUE_THUMBNAIL_PX = 2048
MEASURE_PX = 256
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
    classifying), so a region without restored tiles needs no copy.
    """

    @property
    def input_in_output(self) -> bool:
        """Whether the output already holds the input's pixels."""
        ...

    def restorer_for(self, tile: Tile) -> Restorer | None:
        """The restorer of one tile, or None to copy the tile through untouched."""
        ...

    def source_box(self, tile: Tile, read: Box) -> Box | None:
        """The part of the read box the model should see (the rest is mirrored from it)."""
        ...

    def region_mask(self, region: Box) -> np.ndarray | None:
        """Per pixel of a region, how much of the restored layer replaces the input.

        None: restored and copied tiles blend together, as in a single pass.
        """
        ...


@dataclass(frozen=True)
class UniformPlan:
    """One restorer on every tissue tile (every tile without a tissue map)."""

    restorer: Restorer
    tissue: TissueMap | None = None
    input_in_output: bool = False

    def restorer_for(self, tile: Tile) -> Restorer | None:
        """The restorer, or None for background."""
        if self.tissue is None or self.tissue.fraction(tile.core) >= MIN_TISSUE_FRACTION:
            return self.restorer
        return None

    def source_box(self, tile: Tile, read: Box) -> Box | None:
        """The model sees the whole read box."""
        return None

    def region_mask(self, region: Box) -> np.ndarray | None:
        """Restored and copied tiles blend together."""
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
class TileRecord:
    """What happened to one tile owned by a region (sharpness measured where restored)."""

    index: int
    restored: bool
    sharpness_before: dict[str, float] | None = None
    sharpness_after: dict[str, float] | None = None


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
    group: list[Tile], sources: dict[int, Box | None], batch_size: int
) -> Iterator[list[Tile]]:
    """Batches of whole tiles, then each tile with a source box on its own (its own size)."""
    yield from _batches([t for t in group if sources[t.index] is None], batch_size)
    for tile in group:
        if sources[tile.index] is not None:
            yield [tile]


def restore_region(
    reader: SlideReader,
    plan: TilePlan,
    grid: TileGrid,
    region_index: int,
    output: Path,
    batch_size: int = 4,
    should_stop: Callable[[], bool] = lambda: False,
    levels: int = 1,
) -> RegionResult:
    """Restore one region of the grid and write it to ``output`` (``levels`` pyramid levels).

    Every tile whose core touches the region is run through its planned restorer (or
    copied through), blended with normalised weights and cropped to the region, so the
    result equals a single pass over the whole area. Tiles that are copied everywhere
    they overlap come out bit-identical to the input.
    """
    clock = StageClock()
    region = grid.regions[region_index]
    tiles = grid.tiles_touching(region)
    out_box = grid.output_box(region)
    planned = [(t, plan.restorer_for(t)) for t in tiles]
    groups: dict[int, tuple[Restorer, list[Tile]]] = {}
    for tile, restorer in planned:
        if restorer is not None:
            groups.setdefault(id(restorer), (restorer, []))[1].append(tile)
    copied = [t for t, r in planned if r is None]
    owned = {t.index for t in tiles if grid.owns(region, t)}
    records = {i: TileRecord(i, False) for i in owned}
    if not groups and plan.input_in_output:
        return clock.result(0, len(tiles), [records[i] for i in sorted(records)])
    if not groups:
        with clock("read"):
            pixels = resize(read_padded(reader, region), (out_box.width, out_box.height))
        with clock("write"):
            omezarr.write_levels(output, out_box, pixels, levels)
        return clock.result(0, len(tiles), [records[i] for i in sorted(records)])
    target, reads = region, [t.read for t in tiles]
    if plan.input_in_output:  # only the part the restored tiles reach is read and rewritten
        runs = [t for _, group in groups.values() for t in group]
        target = _aligned(_bounding_box([t.core for t in runs]), grid.area, region)
        reads = [t.read for t in runs] + [target]
    out_box = grid.output_box(target)
    union = _bounding_box(reads)
    with clock("read"):
        source = TileSource(grid, union, read_padded(reader, union))
    mask = plan.region_mask(target) if grid.scale == 1 else None
    accumulator = Accumulator(out_box, channels=3)
    for restorer, group in groups.values():
        halo = min(getattr(restorer, "halo_px", grid.halo_px), grid.halo_px)
        sources = {t.index: source.trimmed(plan.source_box(t, t.core.expand(halo))) for t in group}
        for batch in _model_calls(group, sources, batch_size):
            if should_stop():
                raise JobCancelled
            boxes = [sources[t.index] for t in batch]
            with clock("restore"):
                predictions = restorer(source.model_input(batch, halo, boxes))
            for tile, box, prediction in zip(batch, boxes, predictions, strict=True):
                restored = source.crop_halo(prediction, halo)
                used = tile.core if box is None else box.intersect(tile.core) or tile.core
                if box is not None:
                    restored = source.place(tile, box, restored)
                weight = source.window if box is None else source.window * _inside(tile.core, used)
                with clock("blend"):
                    accumulator.add(grid.output_box(tile.core), restored, weight)
                if tile.index in owned:
                    with clock("measure"):
                        records[tile.index] = source.record(tile, used, restored)
    with clock("blend"):
        if mask is None:
            for tile in copied:
                accumulator.add(
                    grid.output_box(tile.core), source.copy_through(tile), source.window
                )
            pixels = accumulator.result()
        else:
            pixels = accumulator.result_over(source.original(target), mask)
    with clock("write"):
        omezarr.write_levels(output, out_box, pixels, levels)
    ordered = [records[i] for i in sorted(records)]
    return clock.result(len(tiles) - len(copied), len(copied), ordered)


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


class TileSource:
    """The pixels under a set of tiles, read once, cut into model inputs or copies."""

    def __init__(self, grid: TileGrid, union: Box, pixels: np.ndarray) -> None:
        self.grid, self.union, self.pixels = grid, union, pixels
        core = grid.tiles[0].core
        scale = grid.scale
        self.window = tile_window(core.height * scale, core.width * scale, grid.overlap_px * scale)

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

    def trimmed(self, box: Box | None) -> Box | None:
        """A source box without edge strips much sharper than its middle."""
        if box is None:
            return None
        rows, cols = sharpness.soft_core(self.original(box))
        return Box(
            box.x + cols.start, box.y + rows.start, cols.stop - cols.start, rows.stop - rows.start
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


def _central(box: Box, side_px: int) -> Box:
    """The central square of at most ``side_px`` of a box."""
    width, height = min(box.width, side_px), min(box.height, side_px)
    return Box(box.x + (box.width - width) // 2, box.y + (box.height - height) // 2, width, height)


def _inside(core: Box, box: Box) -> np.ndarray:
    """1 where a core's pixels lie in ``box``, else 0 (rows, cols)."""
    weight = np.zeros((core.height, core.width), dtype=np.float32)
    inside = box.intersect(core)
    if inside is not None:
        weight[inside.relative_to(core).slices()] = 1.0
    return weight


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
    first_level: int = 1,
) -> list[tuple[int, int]]:
    """Build the pyramid levels from ``first_level``, write the metadata, move the store."""
    sizes = omezarr.build_pyramid(partial, chunk_px, first_level)
    omezarr.write_metadata(partial, name, sizes, mpp, provenance)
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    return sizes
