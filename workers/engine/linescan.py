"""Bidirectional line-scan phase error: estimate and undo the x-shift of odd rows (paper 001).

A bidirectional laser-scanning microscope writes even rows left to right and odd rows right
to left; a phase error of the resonant mirror moves every odd row by the same amount along
x. ``shift_px`` is that movement in pixels, positive to the right, as
``models.training.degradations.shift_odd_lines(image, shift_px)`` applies it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

FINE_STEP_PX = 0.01


def odd_even_halves(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(even, odd) half-height float64 images at the odd rows' vertical positions.

    The even image is the mean of the even rows above and below each odd row, which takes
    the half-row vertical offset out of the comparison. Channels are averaged.
    """
    values = np.asarray(frame, dtype=np.float64)
    if values.ndim == 3:
        values = values.mean(axis=2)
    even, odd = values[0::2], values[1::2]
    rows = min(len(even) - 1, len(odd))
    if rows < 1:
        raise ValueError("a frame needs at least 3 rows to compare odd and even rows")
    return (even[:rows] + even[1 : rows + 1]) / 2.0, odd[:rows]


def estimate_line_shift(frame: np.ndarray, max_shift_px: float = 8.0) -> float:
    """Sub-pixel x-shift of the odd rows against the even rows, within +-``max_shift_px``.

    The row-summed cross-power spectrum of the (Hann-windowed) halves gives their
    cross-correlation along x at any lag; its peak is found at whole pixels, then refined
    in steps of ``FINE_STEP_PX`` by evaluating the same spectrum (an upsampled DFT, as in
    ``skimage.registration.phase_cross_correlation`` without normalisation: plain
    correlation keeps shot noise from dominating the high frequencies).

    Args:
        frame: One frame, (rows, cols) or (rows, cols, channels), any real dtype.
        max_shift_px: The largest shift searched, in pixels.

    Returns:
        The shift in pixels (positive: odd rows moved right); 0.0 for a featureless frame.

    """
    even, odd = odd_even_halves(frame)
    window = np.hanning(even.shape[1])
    even = (even - even.mean(axis=1, keepdims=True)) * window
    odd = (odd - odd.mean(axis=1, keepdims=True)) * window
    cross = (np.fft.rfft(odd, axis=1) * np.conj(np.fft.rfft(even, axis=1))).sum(axis=0)
    if not np.any(np.abs(cross) > 0):
        return 0.0
    bound = math.floor(max_shift_px)
    coarse = np.arange(-bound, bound + 1, dtype=np.float64)
    best = float(coarse[np.argmax(_correlation(cross, even.shape[1], coarse))])
    low, high = max(best - 1.0, -max_shift_px), min(best + 1.0, max_shift_px)
    fine = np.linspace(low, high, round((high - low) / FINE_STEP_PX) + 1)
    return float(fine[np.argmax(_correlation(cross, even.shape[1], fine))])


def _correlation(cross: np.ndarray, width: int, lags_px: np.ndarray) -> np.ndarray:
    """The real cross-correlation at (fractional) ``lags_px`` from a one-sided spectrum."""
    frequencies = np.arange(cross.size)
    weights = np.full(cross.size, 2.0)  # each one-sided bin stands for itself and its mirror
    weights[0] = 1.0
    if width % 2 == 0:
        weights[-1] = 1.0
    phases = np.exp(2j * np.pi * np.outer(lags_px, frequencies) / width)
    values: np.ndarray = (phases @ (weights * cross)).real
    return values


def correct_line_shift(frame: np.ndarray, shift_px: float) -> np.ndarray:
    """Move the odd rows back by ``shift_px`` (linear interpolation, edges held).

    Args:
        frame: One frame, (rows, cols) or (rows, cols, channels), any real dtype.
        shift_px: The shift :func:`estimate_line_shift` found.

    Returns:
        A float32 copy in the input's units (not rescaled, not rounded); even rows are
        the input's values exactly.

    """
    out = np.asarray(frame, dtype=np.float32).copy()
    if shift_px == 0:
        return out
    shifts = (0.0, -shift_px, *(0.0,) * (out.ndim - 2))
    out[1::2] = ndimage.shift(out[1::2], shifts, order=1, mode="nearest")
    return out
