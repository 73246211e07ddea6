import dataclasses

import numpy as np
import pytest

from workers.engine.blurmap import DEFOCUS, IN_FOCUS, MIXED, MOTION, BlurMap, CellGrid
from workers.engine.classification import FEATURES, probe_boxes
from workers.engine.geometry import Box
from workers.engine.routing import RoutingRules, decide_cells, decide_tile

RULES = RoutingRules()


def features(probabilities: np.ndarray, tenengrad: np.ndarray) -> np.ndarray:
    """A (rows, cols, FEATURES) array of tissue cells with given class probabilities."""
    rows, cols = tenengrad.shape
    values = np.zeros((rows, cols, len(FEATURES)))
    values[..., 0] = 1.0
    values[..., 1:5] = probabilities
    values[..., 5] = 7.0
    values[..., FEATURES.index("tenengrad")] = tenengrad
    return values


SHARP = [0.97, 0.01, 0.01, 0.01]
DEFOCUSED = [0.1, 0.8, 0.05, 0.05]


def test_cell_grid_blocks_cover_every_cell_once() -> None:
    cells = CellGrid(Box(100, 50, 1000, 700), cell_px=128, block_cells=3)
    assert cells.shape == (6, 8)
    covered = np.zeros(cells.shape, dtype=int)
    for rows, cols in cells.blocks:
        covered[rows, cols] += 1
    assert (covered == 1).all()
    assert cells.cell_box(5, 7) == Box(100 + 896, 50 + 640, 104, 60)
    assert cells.cells_under(Box(100 + 130, 50, 200, 10)) == (slice(0, 1), slice(1, 3))
    assert cells.overlap_areas(Box(100 + 120, 50, 16, 10)).tolist() == [[80.0, 80.0]]
    with pytest.raises(ValueError, match="power of two"):
        CellGrid(Box(0, 0, 10, 10), cell_px=100, block_cells=1)


def test_probe_boxes_tile_a_cell_with_classifier_squares() -> None:
    assert probe_boxes(Box(0, 0, 256, 256), 128) == [
        Box(0, 0, 128, 128),
        Box(128, 0, 128, 128),
        Box(0, 128, 128, 128),
        Box(128, 128, 128, 128),
    ]
    assert probe_boxes(Box(0, 0, 60, 300), 128) == [Box(0, 0, 128, 128), Box(0, 128, 128, 128)]


def test_classifier_decides_without_a_sharp_reference() -> None:
    probabilities = np.array([[DEFOCUSED, DEFOCUSED], [DEFOCUSED, SHARP]])
    decided = decide_cells(features(probabilities, np.ones((2, 2))), RULES)
    assert decided.classes.tolist() == [[DEFOCUS, DEFOCUS], [DEFOCUS, IN_FOCUS]]
    assert decided.confidence[0, 0] == pytest.approx(0.9)


def test_sharp_looking_cell_called_blurred_is_vetoed_and_soft_cell_rescued() -> None:
    probabilities = np.array([SHARP] * 20 + [DEFOCUSED] + [SHARP]).reshape(2, 11, 4)
    tenengrad = np.array([5.0] * 20 + [4.9] + [1.0]).reshape(2, 11)
    decided = decide_cells(features(probabilities, tenengrad), RULES)
    assert decided.classes[1, 9] == IN_FOCUS  # as sharp as the slide: the classifier erred
    assert decided.classes[1, 10] == DEFOCUS  # a fifth of the slide's sharpness: blurred
    assert decided.extent[1, 9] == 0 and decided.extent[1, 10] == 7.0


def test_a_split_the_pixels_do_not_bear_out_follows_the_larger_side() -> None:
    # a uniformly soft slide: the classifier misses a third of it, sharpness is alike
    probabilities = np.array([DEFOCUSED] * 20 + [SHARP] * 10).reshape(3, 10, 4)
    decided = decide_cells(features(probabilities, np.full((3, 10), 1.0)), RULES)
    assert (decided.classes == DEFOCUS).all()
    # a uniformly sharp slide with a tenth of false alarms
    probabilities = np.array([SHARP] * 27 + [DEFOCUSED] * 3).reshape(3, 10, 4)
    decided = decide_cells(features(probabilities, np.full((3, 10), 5.0)), RULES)
    assert (decided.classes == IN_FOCUS).all()


def test_background_cells_stay_background() -> None:
    values = features(np.array([[SHARP, DEFOCUSED]]), np.ones((1, 2)))
    values[0, 1] = np.nan
    assert decide_cells(values, RULES).classes.tolist() == [[IN_FOCUS, 0]]


def blur_map(classes: list[list[int]], confidence: float = 0.9) -> BlurMap:
    array = np.array(classes, dtype=np.uint8)
    return BlurMap(array, np.full(array.shape, confidence, np.float32), np.full(array.shape, 5.0))


CELLS = CellGrid(Box(0, 0, 512, 512), cell_px=128, block_cells=4)


def test_tile_routes_follow_the_blurred_cells_under_the_core() -> None:
    sharp = blur_map([[IN_FOCUS] * 4] * 4)
    assert decide_tile(sharp, CELLS, Box(0, 0, 512, 512), RULES).route == ()
    one_defocus = blur_map([[DEFOCUS] + [IN_FOCUS] * 3] + [[IN_FOCUS] * 4] * 3)
    assert decide_tile(one_defocus, CELLS, Box(0, 0, 512, 512), RULES).route == ()  # 1/16
    corner = blur_map([[DEFOCUS, DEFOCUS] + [IN_FOCUS] * 2] * 2 + [[IN_FOCUS] * 4] * 2)
    decision = decide_tile(corner, CELLS, Box(0, 0, 512, 512), RULES)
    assert decision.route == ("deblur-defocus",) and decision.blur_class == DEFOCUS
    both = blur_map([[DEFOCUS, DEFOCUS, MOTION, MOTION]] * 4)
    assert decide_tile(both, CELLS, Box(0, 0, 512, 512), RULES).route == (
        "deblur-motion",
        "deblur-defocus",
    )
    mixed = blur_map([[MIXED] * 4] * 4)
    assert decide_tile(mixed, CELLS, Box(0, 0, 512, 512), RULES).blur_class == MIXED


def test_low_confidence_blur_is_left_alone() -> None:
    unsure = blur_map([[DEFOCUS] * 4] * 4, confidence=0.55)
    assert decide_tile(unsure, CELLS, Box(0, 0, 512, 512), RoutingRules(min_confidence=0.5)).route
    assert decide_tile(unsure, CELLS, Box(0, 0, 512, 512), RULES).route == ()  # default 0.6
    probabilities = np.array([[[0.45, 0.5, 0.03, 0.02]] * 2])  # blurred, but only 0.55 sure
    decided = decide_cells(features(probabilities, np.ones((1, 2))), RULES)
    assert (decided.classes == IN_FOCUS).all()  # counted in focus in the map and qc
    decided = decide_cells(
        features(probabilities, np.ones((1, 2))), RoutingRules(min_confidence=0.5)
    )
    assert (decided.classes == DEFOCUS).all()


class Brighter:
    """Adds 0.25 to every pixel and records what it was given."""

    scale = 1
    halo_px = 16

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.inputs.append(batch.copy())
        return batch + 0.25


def test_routed_output_replaces_only_blurred_cells_without_a_seam(tmp_path) -> None:
    from tests.engine.fakes import ArrayReader
    from workers.engine import omezarr, pipeline
    from workers.engine.routing import RoutedPlan
    from workers.engine.tiling import TileGrid

    rng = np.random.default_rng(0)
    image = rng.integers(40, 130, (512, 768, 3), dtype=np.uint8)
    image[128:384, 256:512] += 60  # the blurred square is brighter: tells what the model saw
    cells = CellGrid(Box(0, 0, 768, 512), cell_px=128, block_cells=8)
    classes = np.full(cells.shape, IN_FOCUS, dtype=np.uint8)
    classes[1:3, 2:4] = DEFOCUS  # a 256 px blurred square at x 256-512, y 128-384
    found = blur_map(classes.tolist())
    grid = TileGrid(cells.area, tile_px=256, halo_px=16, region_px=1024)
    decisions = {t.index: decide_tile(found, cells, t.core, RULES) for t in grid.tiles}
    model = Brighter()
    plan = RoutedPlan(
        decisions, {(("deblur-defocus",), None): model}, found, cells, RULES, ramp_px=32, grow_px=0
    )
    omezarr.create_store(tmp_path / "o.zarr", 768, 512, 256)
    pipeline.restore_region(ArrayReader(image), plan, grid, 0, tmp_path / "o.zarr")
    out = omezarr.read_box(tmp_path / "o.zarr", Box(0, 0, 768, 512)).astype(int)
    changed = np.any(out != image, axis=2)
    assert changed[128:384, 256:512].mean() > 0.9
    assert not changed[:128].any() and not changed[384:].any()
    assert not changed[:, :256].any() and not changed[:, 512:].any()
    assert (out - image.astype(int))[
        200:300, 320:450
    ].min() == 64  # fully restored inside (0.25 * 255)
    steps = np.abs(np.diff(out - image.astype(int), axis=1))[140:370, 240:530]
    assert steps.max() <= 4  # a 32 px ramp from the cells' edge: no seam
    seen = np.concatenate([b[:, :, 16:-16, 16:-16].ravel() for b in model.inputs])
    assert seen.min() >= 100 / 255  # only the blurred square (mirrored), never the sharp tissue


def test_restoration_reaches_into_partly_blurred_cells_but_not_sharp_tissue(tmp_path) -> None:
    from skimage import data

    from models.training import degradations as deg
    from tests.engine.fakes import ArrayReader
    from workers.engine import omezarr, pipeline
    from workers.engine.routing import RoutedPlan
    from workers.engine.tiling import TileGrid

    sharp = np.pad(data.immunohistochemistry(), ((0, 256), (0, 256), (0, 0)), "symmetric")
    unit = sharp.astype(np.float32) / 255.0
    blurred = np.rint(deg.convolve(unit, deg.defocus_psf(4.0, "disk")) * 255.0)
    image = sharp.copy()
    patch = (slice(200, 600), slice(150, 560))  # cells of 128: rows 1-4 and cols 1-4 partly
    image[patch] = blurred[patch].astype(np.uint8)
    cells = CellGrid(Box(0, 0, 768, 768), cell_px=128, block_cells=8)
    classes = np.full(cells.shape, IN_FOCUS, dtype=np.uint8)
    classes[2:4, 2:4] = DEFOCUS  # only the cells wholly inside the patch
    found = blur_map(classes.tolist())
    grid = TileGrid(cells.area, tile_px=768, halo_px=16, region_px=768)
    rules = dataclasses.replace(RULES, min_blurred_share=0.1)  # 1/9 of this one big tile
    decisions = {t.index: decide_tile(found, cells, t.core, rules) for t in grid.tiles}
    plan = RoutedPlan(decisions, {(("deblur-defocus",), None): Brighter()}, found, cells, rules)
    omezarr.create_store(tmp_path / "o.zarr", 768, 768, 256)
    pipeline.restore_region(ArrayReader(image), plan, grid, 0, tmp_path / "o.zarr")
    out = omezarr.read_box(tmp_path / "o.zarr", Box(0, 0, 768, 768))
    changed = np.any(out != image, axis=2)
    assert changed[patch].mean() > 0.8  # the cells found cover 0.39 of the patch
    outside = np.ones(changed.shape, dtype=bool)
    outside[168:632, 118:592] = False  # the patch and one block (32 px) around it
    assert not changed[outside].any()


def test_a_lone_blur_kind_inside_another_takes_its_neighbours_kind() -> None:
    from workers.engine.routing import smooth_blur_kinds

    classes = np.array(
        [
            [IN_FOCUS, IN_FOCUS, IN_FOCUS, IN_FOCUS],
            [MOTION, DEFOCUS, DEFOCUS, IN_FOCUS],
            [IN_FOCUS, DEFOCUS, DEFOCUS, MOTION],
            [IN_FOCUS, IN_FOCUS, MOTION, MOTION],
        ],
        dtype=np.uint8,
    )
    smoothed = smooth_blur_kinds(classes, np.full(classes.shape, 0.9))
    assert smoothed[1, 0] == DEFOCUS  # outvoted by its defocused neighbours
    assert smoothed[3, 3] == MOTION and smoothed[2, 3] == MOTION  # a motion patch of its own
    assert (smoothed[classes == IN_FOCUS] == IN_FOCUS).all()
