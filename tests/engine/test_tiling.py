import itertools

import numpy as np
import pytest

from workers.engine.blending import ramp, tile_window
from workers.engine.geometry import Box
from workers.engine.tiling import TileGrid, axis_starts


@pytest.mark.parametrize("length", [1, 100, 128, 129, 500, 1000, 1037])
def test_axis_starts_cover_the_axis_with_at_least_the_overlap(length: int) -> None:
    core, overlap = 128, 32
    starts = axis_starts(length, core, overlap)
    size = min(core, length)
    assert starts[0] == 0 and starts[-1] + size == length
    for a, b in itertools.pairwise(starts):
        assert b - a <= core - overlap  # neighbours overlap by >= overlap_px


def test_every_pixel_is_covered_and_each_tile_is_owned_by_exactly_one_region() -> None:
    grid = TileGrid(Box(10, 20, 1000, 700), tile_px=128, overlap_px=16, halo_px=8, region_px=256)
    coverage = np.zeros((700, 1000), dtype=int)
    for tile in grid.tiles:
        assert tile.read == tile.core.expand(8)
        coverage[tile.core.relative_to(grid.area).slices()] += 1
    assert coverage.min() >= 1
    assert sum(grid.owned_tile_count(i) for i in range(len(grid.regions))) == len(grid.tiles)
    covered = np.zeros((700, 1000), dtype=int)
    for region in grid.regions:
        covered[region.relative_to(grid.area).slices()] += 1
    assert (covered == 1).all()


def test_tiles_touching_a_region_include_every_tile_covering_its_pixels() -> None:
    grid = TileGrid(Box(0, 0, 900, 900), tile_px=100, overlap_px=20, halo_px=0, region_px=300)
    region = grid.regions[4]
    touching = {t.index for t in grid.tiles_touching(region)}
    for tile in grid.tiles:
        if tile.core.intersect(region):
            assert tile.index in touching


def test_output_box_scales_relative_to_the_area() -> None:
    grid = TileGrid(Box(100, 50, 400, 400), 128, 16, 0, 256, scale=4)
    assert grid.output_box(Box(164, 50, 10, 20)) == Box(256, 0, 40, 80)


def test_invalid_overlap_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        TileGrid(Box(0, 0, 10, 10), tile_px=64, overlap_px=64, halo_px=0, region_px=64)


def test_ramp_is_positive_symmetric_and_flat_in_the_middle() -> None:
    weights = ramp(64, 16)
    assert weights.min() > 0 and np.allclose(weights, weights[::-1])
    assert (weights[16:-16] == 1).all()
    assert tile_window(8, 6, 2).shape == (8, 6)
