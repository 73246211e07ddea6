from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from skimage import metrics

from tests.scan_simulation import (
    cut_frames,
    motion_blur,
    scan_canvas_shape,
    simulate_continuous_scan,
    tissue_canvas,
)
from workers.engine.geometry import Box
from workers.engine.mosaic import MosaicReader, shrink
from workers.engine.registration import register_scan
from workers.engine.scan_layout import ScanLayout

SCAN = ScanLayout(3, 4, True, 176.0, 192.0, "x", (256, 256))
JITTER_PX = 3.0
ssim: Callable[..., float] = metrics.structural_similarity


@dataclass
class Scan:
    sharp: np.ndarray
    blurred: np.ndarray
    frames: list[np.ndarray]
    true: np.ndarray


@pytest.fixture(scope="module")
def scan() -> Scan:
    sharp = tissue_canvas(*scan_canvas_shape(SCAN))
    frames, true = simulate_continuous_scan(sharp, SCAN, blur_px=9, jitter_px=JITTER_PX, seed=7)
    return Scan(sharp, motion_blur(sharp, 9, "x"), frames, true)


def whole(reader: MosaicReader, level: int = 0) -> np.ndarray:
    return reader.read_region((0, 0), level, reader.info.level_dimensions[level])


def coverage(true: np.ndarray, shape: tuple[int, ...], frame_size: tuple[int, int]) -> np.ndarray:
    covered = np.zeros(shape[:2], dtype=bool)
    for x, y in true.tolist():
        covered[y : y + frame_size[1], x : x + frame_size[0]] = True
    return covered


def on_canvas(reader: MosaicReader, positions: np.ndarray, true: np.ndarray, area: Box) -> Any:
    """The mosaic over ``area`` of the true canvas (frame 0 put where it truly is)."""
    rounded = np.rint(positions).astype(int)
    x, y = (int(v) for v in rounded.min(axis=0) + true[0] - rounded[0])
    return reader.read_region((area.x - x, area.y - y), 0, (area.width, area.height))


def test_sharp_frames_at_their_true_positions_reproduce_the_canvas(scan: Scan) -> None:
    frames = cut_frames(scan.sharp, scan.true, SCAN.frame_size)
    reader = MosaicReader(frames.__getitem__, scan.true, SCAN.frame_size, mpp=0.5)
    mosaic = whole(reader)
    x0, y0 = scan.true.min(axis=0)
    expected = scan.sharp[y0 : y0 + mosaic.shape[0], x0 : x0 + mosaic.shape[1]]
    covered = coverage(scan.true - (x0, y0), mosaic.shape, SCAN.frame_size)
    assert mosaic.shape == expected.shape
    assert covered.mean() > 0.95
    assert np.array_equal(mosaic[covered], expected[covered])
    assert (mosaic[~covered] == 255).all()


def test_registered_mosaic_matches_the_canvas_better_than_nominal_placement(scan: Scan) -> None:
    positions, _, _ = register_scan(scan.frames.__getitem__, SCAN, max_correction_px=12.0)
    nominal = SCAN.nominal_positions()
    margin = int(JITTER_PX) + 1
    height, width = scan_canvas_shape(SCAN)
    area = Box(margin, margin, width - 2 * margin, height - 2 * margin)
    truth = scan.blurred[area.slices()]
    scores = {}
    for name, placed in (("registered", positions), ("nominal", nominal)):
        reader = MosaicReader(scan.frames.__getitem__, placed, SCAN.frame_size)
        mosaic = on_canvas(reader, placed, scan.true, area)
        scores[name] = ssim(mosaic, truth, channel_axis=2, data_range=255)
    assert scores["registered"] > 0.99
    assert scores["registered"] > scores["nominal"] + 0.05


def test_pixels_no_frame_covers_are_background() -> None:
    frames = [np.full((20, 30, 3), 100, np.uint8), np.full((20, 30, 3), 50, np.uint8)]
    reader = MosaicReader(frames.__getitem__, np.array([[5.2, 7.0], [45.0, 37.4]]), (30, 20), 0)
    assert reader.info.width == 70 and reader.info.height == 50
    mosaic = whole(reader)
    assert (mosaic[:20, :30] == 100).all() and (mosaic[30:, 40:] == 50).all()
    assert (mosaic[25:, :35] == 0).all() and (mosaic[:25, 35:] == 0).all()
    outside = reader.read_region((-10, -10), 0, (5, 5))
    assert outside.shape == (5, 5, 3) and (outside == 0).all()


def test_overlaps_blend_smoothly_between_frames() -> None:
    frames = [np.full((10, 40), 0, np.uint8), np.full((10, 40), 200, np.uint8)]
    reader = MosaicReader(frames.__getitem__, np.array([[0, 0], [30, 0]]), (40, 10), ramp_px=4)
    row = whole(reader)[5, :, 0].astype(int)
    assert (row[:30] == 0).all() and (row[40:] == 200).all()
    assert (np.diff(row) >= 0).all() and np.diff(row).max() < 60


def test_info_describes_a_sequence_with_virtual_levels() -> None:
    frames = [np.zeros((256, 256), np.uint8)]
    positions = np.array([[0, 0], [2000, 900]])
    reader = MosaicReader(lambda i: frames[0], positions, (256, 256), mpp=0.25)
    info = reader.info
    assert (info.vendor, info.reader, info.mpp_x, info.mpp_y) == ("sequence", "mosaic", 0.25, 0.25)
    assert (info.width, info.height) == (2256, 1156)
    assert info.level_downsamples == [1.0, 4.0]
    assert info.level_dimensions == [(2256, 1156), (564, 289)]


def test_a_level_read_matches_a_shrunk_level_0_read() -> None:
    scan = ScanLayout(2, 8, True, 176.0, 192.0, "x", (256, 256))
    sharp = tissue_canvas(*scan_canvas_shape(scan))
    nominal = scan.nominal_positions()
    frames = cut_frames(sharp, nominal.astype(int), scan.frame_size)
    reader = MosaicReader(frames.__getitem__, nominal, scan.frame_size)
    assert reader.info.level_count == 2
    low = whole(reader, 1).astype(np.float32)
    expected = shrink(whole(reader, 0), 4)
    assert low.shape == expected.shape
    assert np.abs(low - expected).mean() < 2.0
    part = reader.read_region((400, 100), 1, (50, 40)).astype(np.float32)
    assert np.abs(part - low[25:65, 100:150]).max() < 1e-6


def test_grey_frames_read_as_rgb() -> None:
    frames = [np.full((8, 8, 1), 90, np.uint8), np.full((8, 8), 90, np.uint8)]
    reader = MosaicReader(frames.__getitem__, np.array([[0, 0], [4, 0]]), (8, 8))
    assert whole(reader).shape == (8, 12, 3) and (whole(reader) == 90).all()


def test_frames_are_found_by_box_and_decoded_once() -> None:
    calls: list[int] = []

    def frame(i: int) -> np.ndarray:
        calls.append(i)
        return np.full((10, 10, 3), i, np.uint8)

    positions = np.array([[x * 8.0, y * 8.0] for y in range(30) for x in range(30)])
    reader = MosaicReader(frame, positions, (10, 10))
    assert reader.frames_in(Box(0, 0, 9, 9)).tolist() == [0, 1, 30, 31]
    assert reader.frames_in(Box(1000, 1000, 5, 5)).size == 0
    reader.read_region((0, 0), 0, (9, 9))
    reader.read_region((0, 0), 0, (9, 9))
    assert sorted(calls) == [0, 1, 30, 31]


def test_frames_of_the_wrong_size_are_refused() -> None:
    from workers.errors import InvalidInput

    reader = MosaicReader(lambda i: np.zeros((5, 5), np.uint8), np.zeros((1, 2)), (8, 8))
    with pytest.raises(InvalidInput):
        reader.read_region((0, 0), 0, (4, 4))
