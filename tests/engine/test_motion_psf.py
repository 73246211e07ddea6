"""The motion PSF routing hands to ``deblur-motion``: axis and length from the pixels."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from models.training import degradations as deg
from workers.engine.blurmap import IN_FOCUS, MOTION, CellGrid
from workers.engine.geometry import Box
from workers.engine.motion_psf import measure_streak, patch_psfs, tile_psf
from workers.engine.sharpness import grey

CROPS = [(0, 0), (256, 256), (200, 250), (100, 0)]  # rows, cols of 256 px crops of real IHC tissue


def tissue(row: int, col: int) -> np.ndarray:
    return data.immunohistochemistry()[row : row + 256, col : col + 256].astype(np.float32) / 255


def psf_of(image: np.ndarray) -> tuple[float, float] | None:
    """The PSF a one-cell motion patch of this image gets."""
    psfs = patch_psfs(np.full((1, 1), MOTION), np.asarray([[measure_streak(grey(image))]]))
    return None if np.isnan(psfs[0, 0, 0]) else (float(psfs[0, 0, 0]), float(psfs[0, 0, 1]))


@pytest.mark.parametrize("crop", CROPS)
@pytest.mark.parametrize("length", [12.0, 15.0, 25.0])
@pytest.mark.parametrize(("angle", "along_x"), [(0.0, 1.0), (90.0, 0.0)])
def test_a_streak_s_axis_and_length_are_measured_on_real_tissue(
    crop: tuple[int, int], length: float, angle: float, along_x: float
) -> None:
    found = psf_of(deg.convolve(tissue(*crop), deg.motion_psf(length, angle)))
    assert found is not None
    assert found[1] == along_x and found[0] == pytest.approx(length, abs=1.0)


@pytest.mark.parametrize("crop", CROPS)
@pytest.mark.parametrize("angle", [20.0, 45.0, 70.0])
def test_no_psf_is_made_up_for_sharp_tissue_or_oblique_streaks(
    crop: tuple[int, int], angle: float
) -> None:
    assert psf_of(tissue(*crop)) is None
    assert psf_of(deg.convolve(tissue(*crop), deg.motion_psf(15.0, angle))) is None


def test_each_motion_patch_gets_the_median_psf_of_its_cells() -> None:
    classes = np.full((4, 6), IN_FOCUS, dtype=np.uint8)
    classes[0:2, 0:2] = MOTION  # patch A: along x, one edge cell measured short
    classes[3, 4:6] = MOTION  # patch B: no clear axis -> left to the model
    streaks = np.tile(np.asarray([0.5, 0.0, 3.0, 3.0]), (4, 6, 1))  # tensor xx, xy; lags
    streaks[0:2, 0:2] = [
        [[0.2, 0.01, 15.2, 3.1], [0.25, -0.02, 14.8, 3.3]],
        [[0.4, 0.0, 6.0, 3.0], [0.22, 0.0, 15.1, 3.2]],
    ]
    streaks[3, 4:6] = [0.3, 0.2, 9.0, 8.0]  # oblique
    psfs = patch_psfs(classes, streaks)
    assert (psfs[0:2, 0:2] == (15.0, 1.0)).all()
    assert np.isnan(psfs[3, 4:6]).all() and np.isnan(psfs[2]).all()
    cells = CellGrid(Box(0, 0, 6 * 256, 4 * 256), cell_px=256, block_cells=8)
    assert tile_psf(psfs, cells, Box(0, 0, 512, 512)) == (15.0, 1.0)
    assert tile_psf(psfs, cells, Box(1024, 512, 512, 512)) is None


def test_the_map_is_given_the_psf_measured_on_its_motion_cells_pixels() -> None:
    from tests.engine.fakes import ArrayReader
    from workers.engine.blurmap import BlurMap
    from workers.engine.motion_psf import with_motion_psfs

    sharp = np.pad(data.immunohistochemistry(), ((0, 0), (0, 512), (0, 0)), "symmetric")
    image = sharp.copy()
    streak = deg.convolve(sharp[:, 512:].astype(np.float32) / 255, deg.motion_psf(18.0, 90.0))
    image[:, 512:] = np.rint(streak * 255).astype(np.uint8)
    cells = CellGrid(Box(0, 0, 1024, 512), cell_px=256, block_cells=8)
    classes = np.full(cells.shape, IN_FOCUS, dtype=np.uint8)
    classes[:, 2:] = MOTION
    found = with_motion_psfs(
        BlurMap(classes, np.ones(classes.shape, np.float32), np.zeros(classes.shape)),
        ArrayReader(image),
        cells,
    )
    assert found.motion_psf is not None
    assert (found.motion_psf[:, 2:] == (18.0, 0.0)).all()
    assert np.isnan(found.motion_psf[:, :2]).all()
