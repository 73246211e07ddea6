import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.v04.image import Image as NgffImage

from tests.engine.fakes import ArrayReader
from workers.engine import dzi, omezarr
from workers.engine.geometry import Box
from workers.engine.pipeline import finish_output
from workers.errors import NotFound


def make_output(tmp_path: Path, image: np.ndarray, mpp=(0.5, 0.5)) -> Path:
    height, width = image.shape[:2]
    partial, final = tmp_path / "o.partial.zarr", tmp_path / "o.zarr"
    omezarr.create_store(partial, width, height, chunk_px=256)
    omezarr.write_box(partial, Box(0, 0, width, height), image)
    finish_output(partial, final, "test", mpp, {"model": "identity"}, chunk_px=256)
    return final


def test_pyramid_sizes_halve_down_to_a_thumbnail() -> None:
    assert omezarr.pyramid_sizes(1000, 300) == [(1000, 300), (500, 150), (250, 75)]
    assert omezarr.pyramid_sizes(100, 80) == [(100, 80)]


def test_downsample_averages_blocks_and_keeps_odd_edges() -> None:
    pixels = np.arange(5 * 3 * 1, dtype=np.uint8).reshape(5, 3, 1)
    half = omezarr.downsample_2x(pixels)
    assert half.shape == (3, 2, 1) and half[0, 0, 0] == round((0 + 1 + 3 + 4) / 4)


def test_output_validates_and_opens_level_by_level_with_an_independent_reader(
    tmp_path: Path,
) -> None:
    image = np.random.default_rng(0).integers(0, 256, (1100, 1300, 3), dtype=np.uint8)
    store = make_output(tmp_path, image, mpp=(0.25, 0.3))
    assert not (tmp_path / "o.partial.zarr").exists()
    NgffImage.from_zarr(zarr.open_group(str(store), mode="r", zarr_format=2))
    node = next(iter(Reader(parse_url(str(store)))()))
    levels = node.data
    assert [tuple(level.shape) for level in levels] == [
        (3, 1100, 1300),
        (3, 550, 650),
        (3, 275, 325),
        (3, 138, 163),
    ]
    assert np.array_equal(np.moveaxis(np.asarray(levels[0]), 0, 2), image)
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales[0] == pytest.approx([1.0, 0.3, 0.25])
    assert scales[3] == pytest.approx([1.0, 2.4, 2.0])
    attrs = json.loads((store / ".zattrs").read_text())
    datasets = attrs["multiscales"][0]["datasets"]
    assert datasets[2]["coordinateTransformations"][0]["scale"] == [1.0, 1.2, 1.0]
    assert attrs["omero"]["channels"][0]["label"] == "red"
    assert attrs["restoration"]["model"] == "identity"


def test_dzi_tiles_come_from_the_pyramid(tmp_path: Path) -> None:
    image = np.random.default_rng(2).integers(0, 256, (600, 1000, 3), dtype=np.uint8)
    reader = omezarr.OmeZarrReader(make_output(tmp_path, image))
    zoom = dzi.DeepZoom(1000, 600)
    assert zoom.level_count == 11 and zoom.level_size(10) == (1000, 600)
    top = dzi.render_tile(reader, zoom, 10, 1, 0)
    assert np.array_equal(top, image[0:255, 253:509])
    assert dzi.render_tile(reader, zoom, 0, 0, 0).shape == (1, 1, 3)
    assert 'TileSize="254"' in zoom.xml()
    with pytest.raises(NotFound, match="no tile"):
        dzi.render_tile(reader, zoom, 10, 9, 9)


def test_dzi_of_single_level_reader_uses_resampling() -> None:
    image = np.zeros((300, 500, 3), dtype=np.uint8)
    zoom = dzi.DeepZoom(500, 300)
    tile = dzi.render_tile(ArrayReader(image), zoom, zoom.level_count - 2, 0, 0)
    assert tile.shape == (150, 250, 3)


def test_levels_written_by_regions_equal_the_pyramid_built_at_the_end(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (1200, 1500, 3), dtype=np.uint8)
    sizes = omezarr.pyramid_sizes(1500, 1200)
    levels = omezarr.owned_levels(512, 128, len(sizes))
    assert levels == 3
    by_regions, at_end = tmp_path / "regions.zarr", tmp_path / "end.zarr"
    for store in (by_regions, at_end):
        omezarr.create_store(store, 1500, 1200, 128)
    for y in range(0, 1200, 512):
        for x in range(0, 1500, 512):
            box = Box(x, y, min(512, 1500 - x), min(512, 1200 - y))
            omezarr.write_levels(by_regions, box, image[box.slices()], levels)
    omezarr.build_pyramid(by_regions, 128, first=levels)
    omezarr.write_box(at_end, Box(0, 0, 1500, 1200), image)
    omezarr.build_pyramid(at_end, 128)
    for level, (w, h) in enumerate(sizes):
        whole = Box(0, 0, w, h)
        assert np.array_equal(
            omezarr.read_box(by_regions, whole, level), omezarr.read_box(at_end, whole, level)
        ), level
