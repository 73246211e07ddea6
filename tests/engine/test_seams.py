import numpy as np

from workers.engine.geometry import Box
from workers.engine.seams import boundary_lines, boundary_ratio
from workers.engine.tiling import TileGrid


def test_a_step_between_tiles_raises_the_ratio_and_texture_alone_does_not() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(128, 10, (256, 256)).clip(0, 255)
    grid = TileGrid(Box(0, 0, 256, 256), tile_px=64, halo_px=0, region_px=128)
    xs, ys = boundary_lines(grid)
    assert xs == ys == [64, 128, 192]
    assert 0.9 < boundary_ratio(image, xs, ys) < 1.1
    stepped = image.copy()
    for x in xs:
        stepped[:, x:] += 16.0  # each tile 16 grey levels brighter than the one before
    assert boundary_ratio(stepped, xs, ys) > 1.25


def test_the_period_compares_only_steps_of_the_same_phase() -> None:
    rows, cols = np.mgrid[0:64, 0:64]
    image = 40.0 * ((rows % 4 == 0) | (cols % 4 == 0))  # period 4, as pixel shuffle leaves
    assert boundary_ratio(image, [32], [32], period=4) == 1.0
    assert boundary_ratio(image, [32], [32]) > 1.9
