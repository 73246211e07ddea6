from __future__ import annotations

from workers.engine.geometry import Box
from workers.engine.shared_inputs import SharedInput, merge_sources


def test_boxes_of_one_patch_cut_by_tiles_run_as_one_input() -> None:
    quarters = {
        0: Box(600, 520, 424, 504),
        1: Box(1024, 520, 1024, 504),
        2: Box(600, 1024, 424, 776),
        3: Box(1024, 1024, 1024, 776),
    }
    merged = merge_sources(quarters, max_input_px=4_000_000, halo_px=40)
    assert merged == [SharedInput(Box(600, 520, 1448, 1280), (0, 1, 2, 3))]


def test_boxes_that_would_take_in_unblurred_pixels_stay_apart() -> None:
    corner = {0: Box(0, 0, 512, 512), 1: Box(512, 512, 512, 512)}  # diagonal: half empty
    merged = merge_sources(corner, max_input_px=10**8, halo_px=0)
    assert [m.tiles for m in merged] == [(0,), (1,)]
    assert [m.box for m in merged] == [corner[0], corner[1]]


def test_small_misalignments_are_tolerated_but_not_more() -> None:
    close = {0: Box(0, 0, 500, 1000), 1: Box(500, 8, 500, 992)}  # 8 px of 1000 missing
    assert len(merge_sources(close, max_input_px=10**8, halo_px=0)) == 1
    far = {0: Box(0, 0, 500, 1000), 1: Box(500, 200, 500, 800)}  # a fifth of a half missing
    assert len(merge_sources(far, max_input_px=10**8, halo_px=0)) == 2


def test_a_merged_input_stays_within_the_memory_budget() -> None:
    row = {i: Box(i * 1024, 0, 1024, 1024) for i in range(4)}
    budget = (2 * 1024 + 80) * (1024 + 80)  # two tiles and their halo
    merged = merge_sources(row, max_input_px=budget, halo_px=40)
    assert [m.tiles for m in merged] == [(0, 1), (2, 3)]
    for m in merged:
        assert m.box is not None
        assert (m.box.width + 80) * (m.box.height + 80) <= budget
