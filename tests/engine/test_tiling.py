import itertools

import numpy as np
import pytest

from workers.engine.geometry import Box
from workers.engine.tiling import TileGrid, axis_cores


@pytest.mark.parametrize("length", [1, 100, 128, 129, 191, 192, 500, 1000, 1037])
def test_axis_cores_abut_from_multiples_of_the_tile(length: int) -> None:
    tile = 128
    cores = axis_cores(length, tile)
    assert cores[0][0] == 0 and sum(size for _, size in cores) == length
    for (start, size), (following, _) in itertools.pairwise(cores):
        assert following == start + size and start % tile == 0 and size == tile
    last = cores[-1][1]
    assert len(cores) == 1 or tile // 2 <= last < tile + tile // 2


def test_every_pixel_belongs_to_one_tile_and_each_tile_to_one_region() -> None:
    grid = TileGrid(Box(10, 20, 1000, 700), tile_px=128, halo_px=8, region_px=256)
    coverage = np.zeros((700, 1000), dtype=int)
    for index, region in enumerate(grid.regions):
        for tile in grid.tiles_of(index):
            assert tile.region == index and tile.core.intersect(region) == tile.core
            assert tile.read == tile.core.expand(8)
            coverage[tile.core.relative_to(grid.area).slices()] += 1
    assert (coverage == 1).all()
    assert sum(len(grid.tiles_of(i)) for i in range(len(grid.regions))) == len(grid.tiles)
    assert [t.index for t in grid.tiles] == list(range(len(grid.tiles)))


def test_regions_are_disjoint_and_cover_the_area() -> None:
    grid = TileGrid(Box(0, 0, 900, 900), tile_px=100, halo_px=0, region_px=300)
    covered = np.zeros((900, 900), dtype=int)
    for region in grid.regions:
        covered[region.slices()] += 1
    assert (covered == 1).all() and len(grid.regions) == 9


def test_output_box_scales_relative_to_the_area() -> None:
    grid = TileGrid(Box(100, 50, 400, 400), 128, 0, 256, scale=4)
    assert grid.output_box(Box(164, 50, 10, 20)) == Box(256, 0, 40, 80)


def test_regions_smaller_than_a_tile_are_refused() -> None:
    with pytest.raises(ValueError, match="region_px"):
        TileGrid(Box(0, 0, 10, 10), tile_px=64, halo_px=0, region_px=32)
