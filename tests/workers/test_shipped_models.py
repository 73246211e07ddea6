"""Every shipped generator runs through the engine exactly as a job runs it."""

from pathlib import Path

import numpy as np
import pytest

from models.registry import discover
from models.runtime import load_model
from tests.engine.fakes import ArrayReader
from tests.fixtures import tissue_image
from workers.engine import omezarr, pipeline
from workers.engine.geometry import Box
from workers.engine.tiling import TileGrid
from workers.settings import ZOO_DIR

GENERATORS = sorted(n for n, m in discover([ZOO_DIR]).items() if m.manifest.kind == "generator")


def test_the_zoo_ships_generators() -> None:
    assert {"deblur-motion", "deblur-defocus", "sr-x2", "sr-x4"} <= set(GENERATORS)


@pytest.mark.parametrize("name", GENERATORS)
def test_shipped_generator_restores_a_slide_smaller_than_one_tile(
    name: str, tmp_path: Path
) -> None:
    installed = discover([ZOO_DIR])[name]
    model = load_model(installed, ["CPUExecutionProvider"])
    manifest = installed.manifest
    image = tissue_image(150, 203, seed=3)  # odd sizes: padding to the size multiple
    grid = TileGrid(
        Box(0, 0, 203, 150),
        tile_px=manifest.tile_px,
        overlap_px=16,
        halo_px=manifest.halo_px,
        region_px=512,
        scale=manifest.scale,
    )
    out_box = grid.output_box(grid.area)
    omezarr.create_store(tmp_path / "o.zarr", out_box.width, out_box.height, chunk_px=512)
    pipeline.restore_region(
        ArrayReader(image), pipeline.UniformPlan(model), grid, 0, tmp_path / "o.zarr"
    )
    out = omezarr.read_box(tmp_path / "o.zarr", out_box)
    assert out.shape == (150 * manifest.scale, 203 * manifest.scale, 3)
    reference = image.repeat(manifest.scale, 0).repeat(manifest.scale, 1).astype(float)
    assert np.abs(out.astype(float) - reference).mean() < 25, "output no longer resembles input"
