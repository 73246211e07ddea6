"""Time-lapse OME-Zarr: levels per frame, NGFF metadata, one frame read like a slide."""

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.v04.image import Image as NgffImage

from workers.engine import dzi, omezarr, timelapse
from workers.errors import NotFound

WIDTH, HEIGHT, FRAMES = 600, 520, 3


def frames(channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(10, 240, (FRAMES, HEIGHT, WIDTH, channels), dtype=np.uint8)


def make_store(tmp_path: Path, pixels: np.ndarray, interval_s: float | None = 0.033) -> Path:
    path = tmp_path / "t.zarr"
    channels = pixels.shape[3]
    timelapse.create_time_store(path, FRAMES, WIDTH, HEIGHT, channels, chunk_px=256)
    timelapse.create_time_store(path, FRAMES, WIDTH, HEIGHT, channels, chunk_px=256)  # kept
    for t, frame in enumerate(pixels):
        timelapse.write_frame(path, t, frame[..., 0] if channels == 1 else frame)
    labels = ["DNA"] if channels == 1 else ["red", "green", "blue"]
    timelapse.write_time_metadata(path, "scan", 0.4, interval_s, labels, {"model": "sr-x2"})
    return path


def test_every_frame_is_written_at_every_level(tmp_path: Path) -> None:
    pixels = frames()
    path = make_store(tmp_path, pixels)
    levels = [zarr.open_array(str(path / str(k)), mode="r") for k in range(3)]
    assert [a.shape for a in levels] == [(3, 1, 520, 600), (3, 1, 260, 300), (3, 1, 130, 150)]
    assert not (path / "3").exists()
    assert levels[0].chunks == (1, 1, 256, 256)
    for t in range(FRAMES):
        assert np.array_equal(levels[0][t, 0], pixels[t, ..., 0])
        half = omezarr.downsample_2x(pixels[t])
        assert np.array_equal(levels[1][t, 0], half[..., 0])
        assert np.array_equal(levels[2][t, 0], omezarr.downsample_2x(half)[..., 0])


def test_metadata_validates_and_opens_with_an_independent_reader(tmp_path: Path) -> None:
    pixels = frames()
    path = make_store(tmp_path, pixels)
    NgffImage.from_zarr(zarr.open_group(str(path), mode="r", zarr_format=2))
    node = next(iter(Reader(parse_url(str(path)))()))
    assert [tuple(level.shape) for level in node.data] == [
        (3, 1, 520, 600),
        (3, 1, 260, 300),
        (3, 1, 130, 150),
    ]
    assert np.array_equal(np.asarray(node.data[0][1, 0]), pixels[1, ..., 0])
    attrs = json.loads((path / ".zattrs").read_text())
    multiscale = attrs["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["t", "c", "y", "x"]
    assert multiscale["axes"][0] == {"name": "t", "type": "time", "unit": "second"}
    assert multiscale["axes"][3]["unit"] == "micrometer"
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    assert scales[2] == pytest.approx([0.033, 1.0, 1.6, 1.6])
    channel = attrs["omero"]["channels"][0]
    assert channel["label"] == "DNA"
    smallest = np.asarray(node.data[2])
    assert channel["window"]["start"] == smallest.min()
    assert channel["window"]["end"] == smallest.max()
    assert attrs["restoration"] == {"model": "sr-x2"}


def test_unknown_interval_leaves_time_without_a_unit(tmp_path: Path) -> None:
    path = make_store(tmp_path, frames(3), interval_s=None)
    NgffImage.from_zarr(zarr.open_group(str(path), mode="r", zarr_format=2))
    multiscale = json.loads((path / ".zattrs").read_text())["multiscales"][0]
    assert "unit" not in multiscale["axes"][0]
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"][0] == 1.0


def test_frame_reader_serves_one_frame_as_rgb(tmp_path: Path) -> None:
    pixels = frames()
    path = make_store(tmp_path, pixels)
    reader = timelapse.TimeFrameReader(path, 2)
    assert reader.info.level_dimensions == [(600, 520), (300, 260), (150, 130)]
    assert reader.info.mpp_x == pytest.approx(0.4)
    region = reader.read_region((100, 40), 0, (50, 30))
    assert region.shape == (30, 50, 3)
    assert np.array_equal(region, np.repeat(pixels[2, 40:70, 100:150], 3, axis=2))
    level1 = reader.read_region((100, 40), 1, (20, 10))
    assert np.array_equal(level1[..., 1], omezarr.downsample_2x(pixels[2])[20:30, 50:70, 0])
    zoom = dzi.DeepZoom(WIDTH, HEIGHT)
    tile = dzi.render_tile(reader, zoom, zoom.level_count - 1, 0, 0)
    assert np.array_equal(tile, np.repeat(pixels[2, :255, :255], 3, axis=2))


def test_wrong_frames_are_refused(tmp_path: Path) -> None:
    path = make_store(tmp_path, frames())
    with pytest.raises(NotFound):
        timelapse.TimeFrameReader(path, 3)
    with pytest.raises(ValueError, match="uint8"):
        timelapse.write_frame(path, 0, np.zeros((HEIGHT, WIDTH), np.float32))
