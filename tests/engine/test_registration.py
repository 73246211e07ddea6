from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pytest

from tests.scan_simulation import (
    cut_frames,
    scan_canvas_shape,
    simulate_continuous_scan,
    tissue_canvas,
)
from workers.engine.registration import (
    PairShift,
    measure_pair,
    register_scan,
    solve_positions,
)
from workers.engine.scan_layout import ScanLayout


def layout(axis: Literal["x", "y"] = "x", rows: int = 3, per_row: int = 4) -> ScanLayout:
    return ScanLayout(rows, per_row, True, 176.0, 192.0, axis, (256, 256))


def placement_error(positions: np.ndarray, true: np.ndarray) -> float:
    """Largest per-axis error after removing the common translation."""
    return float(np.abs((positions - positions[0]) - (true - true[0])).max())


def offset(positions: np.ndarray, first: int, second: int) -> tuple[float, float]:
    dx, dy = positions[second] - positions[first]
    return float(dx), float(dy)


def test_nominal_positions_follow_a_serpentine_along_x() -> None:
    positions = layout("x").nominal_positions()
    assert positions.dtype == np.float64
    assert positions[:4].tolist() == [[0, 0], [176, 0], [352, 0], [528, 0]]
    assert positions[4:8].tolist() == [[528, 192], [352, 192], [176, 192], [0, 192]]
    assert positions[8].tolist() == [0, 384]


def test_nominal_positions_swap_axes_for_a_scan_along_y() -> None:
    positions = layout("y").nominal_positions()
    assert positions[:4].tolist() == [[0, 0], [0, 176], [0, 352], [0, 528]]
    assert positions[4:8].tolist() == [[192, 528], [192, 352], [192, 176], [192, 0]]


def test_neighbour_pairs_of_a_3x4_serpentine() -> None:
    within = [(0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11)]
    across = [(3, 4), (2, 4), (1, 5), (2, 5), (3, 5), (0, 6), (1, 6), (2, 6), (0, 7), (1, 7)]
    across += [(7, 8), (6, 8), (5, 9), (6, 9), (7, 9), (4, 10), (5, 10), (6, 10), (4, 11), (5, 11)]
    assert layout("x").neighbour_pairs() == sorted(within + across)
    assert layout("y").neighbour_pairs() == sorted(within + across)


def test_measure_pair_finds_the_offset_of_the_second_frame() -> None:
    canvas = tissue_canvas(300, 500)
    first, second = canvas[0:256, 0:256], canvas[5:261, 170:426]
    shift = measure_pair(first, second, (176.0, 0.0), 16.0, pair=(3, 4))
    assert (shift.first, shift.second, shift.reliable) == (3, 4, True)
    assert shift.dx == pytest.approx(170, abs=0.1)
    assert shift.dy == pytest.approx(5, abs=0.1)
    assert shift.peak > 0.95


def test_a_correction_beyond_the_limit_is_unreliable() -> None:
    canvas = tissue_canvas(300, 500)
    shift = measure_pair(canvas[0:256, 0:256], canvas[5:261, 170:426], (176.0, 0.0), 4.0)
    assert not shift.reliable


@pytest.mark.parametrize("axis", ["x", "y"])
def test_registration_places_every_frame_within_a_pixel(axis: Literal["x", "y"]) -> None:
    scan = layout(axis)
    sharp = tissue_canvas(*scan_canvas_shape(scan))
    frames, true = simulate_continuous_scan(sharp, scan, blur_px=9, jitter_px=3.0, seed=7)
    assert np.abs(true - scan.nominal_positions()).max() >= 2  # the jitter is real
    positions, shifts, residuals = register_scan(frames.__getitem__, scan, max_correction_px=12.0)
    assert all(s.reliable for s in shifts)
    assert placement_error(positions, true) < 1.0
    assert max(residuals) < 0.5
    assert positions[0].tolist() == [0.0, 0.0]


def test_registration_survives_noise_and_stronger_blur() -> None:
    scan = layout("y", rows=3, per_row=5)
    sharp = tissue_canvas(*scan_canvas_shape(scan))
    frames, true = simulate_continuous_scan(sharp, scan, blur_px=21, jitter_px=5.0, seed=3)
    rng = np.random.default_rng(0)
    noisy = [np.clip(f + rng.normal(0, 4, f.shape), 0, 255).astype(np.uint8) for f in frames]
    positions, _, _ = register_scan(noisy.__getitem__, scan, max_correction_px=16.0)
    assert placement_error(positions, true) < 1.0


def test_a_flat_overlap_is_unreliable_and_falls_back_to_nominal() -> None:
    scan = ScanLayout(1, 3, False, 176.0, 192.0, "x", (256, 256))
    canvas = tissue_canvas(*scan_canvas_shape(scan))
    canvas[:, 330:450] = 240  # bare glass where frames 1 and 2 overlap
    true = np.array([[0, 0], [173, 2], [349, 0]])
    frames = cut_frames(canvas, true, scan.frame_size)
    nominal = scan.nominal_positions()
    shifts = [
        measure_pair(frames[i], frames[j], (176.0, 0.0), 12.0, pair=(i, j))
        for i, j in scan.neighbour_pairs()
    ]
    assert [s.reliable for s in shifts] == [True, False]
    assert (shifts[1].dx, shifts[1].dy, shifts[1].peak) == (176.0, 0.0, 0.0)
    positions, residuals = solve_positions(3, shifts, nominal)
    assert positions[1] == pytest.approx([173, 2], abs=0.05)
    assert positions[2] - positions[1] == pytest.approx([176, 0], abs=1e-6)
    assert residuals[0] < 0.05


def test_the_solve_ties_frames_without_pairs_to_their_predecessor() -> None:
    nominal = np.array([[0.0, 0.0], [100.0, 0.0], [200.0, 0.0], [300.0, 0.0]])
    pairs = [PairShift(0, 1, 103.0, 1.0, 1.0, True), PairShift(2, 3, 98.0, 0.0, 1.0, True)]
    positions, residuals = solve_positions(4, pairs, nominal)
    np.testing.assert_allclose(positions, [[0, 0], [103, 1], [203, 1], [301, 1]], atol=1e-9)
    assert residuals == pytest.approx([0, 0], abs=1e-9)


def test_the_solve_averages_disagreeing_pairs_by_weight() -> None:
    nominal = np.array([[0.0, 0.0], [100.0, 0.0], [200.0, 0.0]])
    pairs = [
        PairShift(0, 1, 100.0, 0.0, 1.0, True),
        PairShift(1, 2, 100.0, 0.0, 1.0, True),
        PairShift(0, 2, 203.0, 0.0, 1.0, True),
    ]
    positions, residuals = solve_positions(3, pairs, nominal)
    assert positions[:, 0] == pytest.approx([0, 101, 202])
    assert residuals == pytest.approx([1, 1, 1])


def test_the_solve_scales_to_thousands_of_frames() -> None:
    scan = ScanLayout(40, 80, True, 800.0, 800.0, "x", (1024, 1024))
    rng = np.random.default_rng(1)
    nominal = scan.nominal_positions()
    true = nominal + rng.uniform(-5, 5, nominal.shape)
    true -= true[0] - nominal[0]
    start = time.perf_counter()
    pairs = scan.neighbour_pairs()
    shifts = [PairShift(i, j, *offset(true, i, j), 1.0, True) for i, j in pairs]
    positions, residuals = solve_positions(scan.count, shifts, nominal)
    elapsed = time.perf_counter() - start
    assert len(pairs) > 3 * scan.count
    assert np.abs(positions - true).max() < 1e-6
    assert max(residuals) < 1e-6
    assert elapsed < 5.0
