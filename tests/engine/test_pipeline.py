from pathlib import Path

import numpy as np
import pytest

from tests.engine.fakes import ArrayReader, Blur, Identity, NearestX2, whole_image_blur
from tests.fixtures import tissue_image
from workers.engine import omezarr, pipeline
from workers.engine.geometry import Box
from workers.engine.tiling import TileGrid


def run_all_regions(reader, restorer, grid: TileGrid, out: Path, tissue=None) -> np.ndarray:
    full = grid.output_box(grid.area)
    omezarr.create_store(out, full.width, full.height, chunk_px=128)
    for index in range(len(grid.regions)):
        pipeline.restore_region(reader, pipeline.UniformPlan(restorer, tissue), grid, index, out)
    return omezarr.read_box(out, full)


@pytest.fixture
def noise_image() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (700, 900, 3), dtype=np.uint8)


def test_identity_model_reproduces_the_input_exactly(tmp_path: Path, noise_image) -> None:
    grid = TileGrid(Box(0, 0, 900, 700), tile_px=128, halo_px=8, region_px=256)
    out = run_all_regions(ArrayReader(noise_image), Identity(), grid, tmp_path / "o.zarr")
    assert np.array_equal(out, noise_image)


def test_tiled_convolution_equals_whole_image_convolution(tmp_path: Path, noise_image) -> None:
    grid = TileGrid(Box(0, 0, 900, 700), tile_px=128, halo_px=4, region_px=256)
    out = run_all_regions(ArrayReader(noise_image), Blur(), grid, tmp_path / "o.zarr")
    reference = whole_image_blur(noise_image)
    difference = np.abs(out.astype(float) - reference)[1:-1, 1:-1]
    assert difference.max() <= 1


@pytest.mark.parametrize(("halo_px", "exact"), [(0, False), (4, True)])
def test_halo_hides_the_edges_of_abutting_tiles(
    tmp_path: Path, noise_image, halo_px, exact
) -> None:
    grid = TileGrid(Box(0, 0, 900, 700), tile_px=128, halo_px=halo_px, region_px=256)
    out = run_all_regions(ArrayReader(noise_image), Blur(), grid, tmp_path / "o.zarr")
    error = np.abs(out.astype(float) - whole_image_blur(noise_image))[1:-1, 1:-1].max()
    assert (error <= 1) == exact


def test_region_of_interest_and_x2_scale(tmp_path: Path, noise_image) -> None:
    area = Box(100, 50, 300, 260)
    grid = TileGrid(area, tile_px=96, halo_px=2, region_px=128, scale=2)
    out = run_all_regions(ArrayReader(noise_image), NearestX2(), grid, tmp_path / "o.zarr")
    crop = noise_image[50:310, 100:400]
    assert out.shape == (520, 600, 3)
    assert np.array_equal(out, crop.repeat(2, axis=0).repeat(2, axis=1))


def test_background_tiles_are_copied_through_without_the_model(tmp_path: Path) -> None:
    image = tissue_image(600, 800)
    reader = ArrayReader(image)
    tissue = pipeline.make_tissue_map(reader, max_px=256)
    assert 0.05 < tissue.mask.mean() < 0.95

    class Counting(Identity):
        calls = 0

        def __call__(self, batch):
            Counting.calls += len(batch)
            return batch * 0.0  # visible wherever the model ran

    grid = TileGrid(Box(0, 0, 800, 600), tile_px=64, halo_px=0, region_px=256)
    out = run_all_regions(reader, Counting(), grid, tmp_path / "o.zarr", tissue)
    assert 0 < Counting.calls < len(grid.tiles)
    white = (image.min(axis=2) > 235)[:, :, None]
    corner = (slice(0, 40), slice(0, 40))
    assert white[corner].all() and np.array_equal(out[corner], image[corner])


def test_cancellation_stops_between_batches(tmp_path: Path, noise_image) -> None:
    grid = TileGrid(Box(0, 0, 900, 700), tile_px=128, halo_px=0, region_px=512)
    omezarr.create_store(tmp_path / "o.zarr", 900, 700, 128)
    with pytest.raises(pipeline.JobCancelled):
        pipeline.restore_region(
            ArrayReader(noise_image),
            pipeline.UniformPlan(Identity()),
            grid,
            0,
            tmp_path / "o.zarr",
            should_stop=lambda: True,
        )


def test_read_padded_mirrors_outside_the_slide(noise_image) -> None:
    pixels = pipeline.read_padded(ArrayReader(noise_image), Box(-3, -2, 10, 10))
    assert pixels.shape == (10, 10, 3)
    assert np.array_equal(pixels[2:, 3:], noise_image[:8, :7])
    assert np.array_equal(pixels[1, 3:], noise_image[0, :7])


def test_progress_counts_tiles_as_they_finish(tmp_path: Path, noise_image) -> None:
    grid = TileGrid(Box(0, 0, 900, 700), tile_px=128, halo_px=0, region_px=512)
    omezarr.create_store(tmp_path / "o.zarr", 900, 700, 128)
    heard: list[int] = []
    pipeline.restore_region(
        ArrayReader(noise_image),
        pipeline.UniformPlan(Identity()),
        grid,
        0,
        tmp_path / "o.zarr",
        batch_size=2,
        progress=heard.append,
    )
    assert heard == list(range(2, 17, 2))  # 16 tiles in region 0, two per model call
