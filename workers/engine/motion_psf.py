"""The motion PSF of each motion-blurred patch, for ``deblur-motion``'s known-PSF graph.

``deblur-motion`` estimates its PSF from its whole input, and a few pixels of sharp
tissue at the edge of a routed box spoil that estimate (a 15 px streak restored to SSIM
0.85 alone fell to 0.53 with a 32 px sharp margin). Told the PSF, it restores the same
patch to 0.83 with the margin. The streak's axis and length come from each cell's pixels:

- a streak removes the detail along it, so it runs along the direction of least gradient
  energy (the minor axis of the gradient structure tensor);
- the derivative along the streak of a box-blurred image is the difference of two copies
  of the sharp image L apart, so its autocorrelation has its deepest trough at lag L
  (within 0.3 px from 7 px up on real tissue; the classifier's extent, taken on one probe
  per cell, was a third short at a patch's edge).

The known-PSF graph takes streaks along x or y, which is how a scanner's stage moves; a
patch whose streak is oblique, or shorter than ``MIN_LENGTH_PX`` (where the trough is
lost in the tissue's own texture), is left to the model's own estimate. Each connected
patch of motion cells gets one PSF, so the tiles of one patch share a restorer (and one
model input where they abut).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage

from workers.engine.blurmap import MOTION, BlurMap, CellGrid
from workers.engine.geometry import Box
from workers.engine.pipeline import read_padded
from workers.engine.readers import SlideReader
from workers.engine.sharpness import grey

STREAK_MEASURES = ("tensor_xx", "tensor_xy", "streak_x_px", "streak_y_px")  # measure_streak
MIN_ANISOTROPY = math.log(1.5)  # log(largest / smallest gradient energy) at least
MAX_AXIS_DEGREES = 10.0  # the streak within this of the x or the y axis
MIN_LENGTH_PX = 6.0
MAX_LENGTH_PX = 64
LENGTH_STEP_PX = 1.0  # lengths are rounded to this, so a patch's tiles agree


def gradient_tensor(grey: np.ndarray) -> tuple[float, float]:
    """(xx, xy) of the image's mean gradient structure tensor, scaled so that xx + yy = 1."""
    image = ndimage.gaussian_filter(grey.astype(np.float32), 0.7, mode="reflect")
    gx, gy = ndimage.sobel(image, axis=1), ndimage.sobel(image, axis=0)
    xx, yy, xy = float((gx * gx).mean()), float((gy * gy).mean()), float((gx * gy).mean())
    total = max(xx + yy, 1e-12)
    return xx / total, xy / total


def streak_length(grey: np.ndarray, along_x: bool, max_px: int = MAX_LENGTH_PX) -> float:
    """Lag (px) of the deepest trough of the derivative's autocorrelation along the streak.

    Averaged over the image's lines, refined to a fraction of a pixel by a parabola.
    """
    lines = np.diff(grey.astype(np.float64), axis=1 if along_x else 0)
    if not along_x:
        lines = lines.T
    max_px = min(max_px, lines.shape[1] // 2)
    if max_px < 4:
        return float("nan")
    lines = lines - lines.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(lines, 2 * lines.shape[1], axis=1)
    correlation = np.fft.irfft(spectrum * np.conj(spectrum), axis=1)[:, :max_px].mean(axis=0)
    if correlation[0] <= 0:
        return float("nan")
    lag = int(np.argmin(correlation[2:-1])) + 2
    before, at, after = correlation[lag - 1 : lag + 2]
    curvature = before - 2 * at + after
    shift = 0.5 * (before - after) / curvature if curvature > 0 else 0.0
    return float(lag + np.clip(shift, -0.5, 0.5))


def measure_streak(grey: np.ndarray) -> tuple[float, float, float, float]:
    """``STREAK_MEASURES`` of a grey image: its gradient tensor and the trough lags."""
    return (
        *gradient_tensor(grey),
        streak_length(grey, along_x=True),
        streak_length(grey, along_x=False),
    )


def streak_axis(xx: float, xy: float) -> tuple[float, float]:
    """(streak angle in degrees from x in [0, 180), log anisotropy) of a scaled tensor.

    The streak runs along the direction of least gradient energy: the tensor's
    eigenvector of the smaller eigenvalue.
    """
    half_difference = math.hypot(xx - 0.5, xy)
    gradient_angle = 0.5 * math.degrees(math.atan2(2 * xy, 2 * xx - 1))
    anisotropy = math.log((0.5 + half_difference) / max(0.5 - half_difference, 1e-9))
    return (gradient_angle + 90.0) % 180.0, anisotropy


def patch_psfs(classes: np.ndarray, streaks: np.ndarray) -> np.ndarray:
    """Per cell (rows, cols, 2): (length px, 1.0 along x or 0.0 along y); NaN where none.

    ``streaks`` (rows, cols, 4) holds each cell's :func:`measure_streak`. Only motion cells
    get a PSF, the same for every cell of a connected patch: the axis of the patch's summed
    gradient tensor and the median trough lag along it, when the streak lies along x or y,
    the tensor is clearly anisotropic, and the streak is long enough to measure.
    """
    psfs = np.full((*classes.shape, 2), np.nan, dtype=np.float32)
    patches, count = ndimage.label(classes == MOTION, structure=np.ones((3, 3)))
    for label in range(1, count + 1):
        cells = streaks[patches == label]
        cells = cells[~np.isnan(cells).any(axis=1)]  # cells too small to measure
        if not len(cells):
            continue
        xx, xy = cells[:, :2].mean(axis=0).tolist()
        lag_x, lag_y = np.median(cells[:, 2:], axis=0).tolist()
        angle, anisotropy = streak_axis(xx, xy)
        off_x, off_y = min(angle, 180.0 - angle), abs(angle - 90.0)
        along_x = off_x < off_y
        length = lag_x if along_x else lag_y
        if (
            min(off_x, off_y) <= MAX_AXIS_DEGREES
            and anisotropy >= MIN_ANISOTROPY
            and length >= MIN_LENGTH_PX
        ):
            psfs[patches == label] = (round(length / LENGTH_STEP_PX) * LENGTH_STEP_PX, along_x)
    return psfs


def with_motion_psfs(blur_map: BlurMap, reader: SlideReader, cells: CellGrid) -> BlurMap:
    """The map with the PSF of each motion patch, measured on its cells' pixels.

    Only the cells decided as motion are read (a few on most slides), once, when the map
    is decided.
    """
    streaks = np.full((*blur_map.classes.shape, len(STREAK_MEASURES)), np.nan)
    for row, col in zip(*np.nonzero(blur_map.classes == MOTION), strict=True):
        pixels = read_padded(reader, cells.cell_box(int(row), int(col)))
        streaks[row, col] = measure_streak(grey(pixels))
    return dataclasses.replace(blur_map, motion_psf=patch_psfs(blur_map.classes, streaks))


def tile_psf(psfs: np.ndarray, cells: CellGrid, core: Box) -> tuple[float, float] | None:
    """The PSF of the motion patch covering most of a tile core, or None."""
    rows, cols = cells.cells_under(core)
    areas = cells.overlap_areas(core)
    under = psfs[rows, cols]
    known = ~np.isnan(under[..., 0])
    if not known.any():
        return None
    weights: dict[tuple[float, float], float] = {}
    for psf, area in zip(map(tuple, under[known].tolist()), areas[known], strict=True):
        weights[psf] = weights.get(psf, 0.0) + float(area)
    length, along_x = max(weights, key=lambda p: weights[p])
    return float(length), float(along_x)
