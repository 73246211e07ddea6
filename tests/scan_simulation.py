"""A continuous-stage scanner in numpy: overlapping, motion-blurred frames of real tissue."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage import data

from workers.engine.scan_layout import ScanLayout


def tissue_canvas(height: int, width: int) -> np.ndarray:
    """Real IHC tissue (scikit-image's 512 x 512 sample) mirrored out to (height, width, 3)."""
    sample: np.ndarray = data.immunohistochemistry()  # type: ignore[no-untyped-call]
    pad = ((0, max(0, height - sample.shape[0])), (0, max(0, width - sample.shape[1])), (0, 0))
    return np.ascontiguousarray(np.pad(sample, pad, mode="symmetric")[:height, :width])


def scan_canvas_shape(layout: ScanLayout) -> tuple[int, int]:
    """(height, width) of a canvas that holds every nominal frame of ``layout``."""
    extent = layout.nominal_positions().max(axis=0)
    width, height = layout.frame_size
    return math.ceil(extent[1]) + height, math.ceil(extent[0]) + width


def motion_blur(image: np.ndarray, blur_px: int, scan_axis: str) -> np.ndarray:
    """``image`` box-blurred over ``blur_px`` pixels along the scan axis, as uint8."""
    if blur_px <= 1:
        return image.copy()
    axis = 1 if scan_axis == "x" else 0
    blurred = ndimage.uniform_filter1d(image.astype(np.float32), blur_px, axis=axis, mode="nearest")
    pixels: np.ndarray = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
    return pixels


def true_positions(
    layout: ScanLayout, jitter_px: float, seed: int, canvas_shape: tuple[int, int]
) -> np.ndarray:
    """Integer (x, y) of each frame: nominal plus uniform +-jitter, kept inside the canvas."""
    nominal = layout.nominal_positions()
    rng = np.random.default_rng(seed)
    jittered = np.rint(nominal + rng.uniform(-jitter_px, jitter_px, nominal.shape))
    width, height = layout.frame_size
    upper = np.array([canvas_shape[1] - width, canvas_shape[0] - height])
    return np.clip(jittered, 0, upper).astype(np.int64)


def cut_frames(
    image: np.ndarray, positions: np.ndarray, frame_size: tuple[int, int]
) -> list[np.ndarray]:
    """The frames of ``frame_size`` (width, height) whose top-left corners are ``positions``."""
    width, height = frame_size
    return [image[y : y + height, x : x + width].copy() for x, y in positions.tolist()]


def simulate_continuous_scan(
    sharp: np.ndarray, layout: ScanLayout, blur_px: int, jitter_px: float, seed: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames (uint8 RGB, motion-blurred along the scan axis) and their TRUE positions (n, 2).

    The positions are the nominal ones plus a random stage error the server is not told.
    """
    canvas_shape = (sharp.shape[0], sharp.shape[1])
    needed = scan_canvas_shape(layout)
    if needed[0] > canvas_shape[0] or needed[1] > canvas_shape[1]:
        raise ValueError(f"the scan needs a canvas of {needed}, got {canvas_shape}")
    positions = true_positions(layout, jitter_px, seed, canvas_shape)
    blurred = motion_blur(sharp, blur_px, layout.scan_axis)
    return cut_frames(blurred, positions, layout.frame_size), positions
