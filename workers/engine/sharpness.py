"""No-reference sharpness of tissue: variance of the Laplacian, Tenengrad, high-frequency share.

All three are computed on the grey level in [0, 1] after a light Gaussian (sigma 0.7 px)
that keeps scanner noise and JPEG blocking from reading as detail. The Laplacian and
Tenengrad figures are divided by the tile's grey variance, so they measure how fine the
detail is, not how much stain there is; the high-frequency share is the part of the
spectrum's power above a quarter of the sampling rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.training import metrics

MEASURES = ("laplacian_var", "tenengrad", "hf_share")
PRESMOOTH_SIGMA_PX = 0.7
HIGH_FREQUENCY = 0.25  # cycles per pixel
MIN_VARIANCE = 1e-6


@dataclass(frozen=True)
class Sharpness:
    """The three measures of one image (higher is sharper)."""

    laplacian_var: float
    tenengrad: float
    hf_share: float

    def as_dict(self) -> dict[str, float]:
        """The measures by name."""
        return {name: getattr(self, name) for name in MEASURES}


def grey(pixels: np.ndarray) -> np.ndarray:
    """Mean of the channels of (rows, cols[, channels]) pixels as float32 in [0, 1]."""
    values = pixels.astype(np.float32)
    if values.ndim == 3:
        values = values @ np.full(values.shape[2], 1.0 / values.shape[2], dtype=np.float32)
    return values / 255.0 if pixels.dtype == np.uint8 else values


def measure(pixels: np.ndarray) -> Sharpness:
    """Sharpness of an image (uint8 or float in [0, 1], grey or RGB).

    The measures are the training library's (``models.training.metrics``), taken on the
    pre-smoothed grey level and, but for the share, divided by its variance.
    """
    image = ndimage.gaussian_filter(grey(pixels), PRESMOOTH_SIGMA_PX, mode="reflect")
    variance = max(float(image.var()), MIN_VARIANCE)
    return Sharpness(
        laplacian_var=metrics.laplacian_variance(image) / variance,
        tenengrad=metrics.tenengrad(image) / variance,
        hf_share=metrics.high_frequency_share(image, HIGH_FREQUENCY),
    )


def soft_core(pixels: np.ndarray, strip_px: int = 64, factor: float = 1.6) -> tuple[slice, slice]:
    """(rows, cols) of ``pixels`` without edge strips much sharper than the rest.

    Strips of ``strip_px`` are dropped from each edge while the edge strip's Tenengrad is
    more than ``factor`` times the median strip's: a blurred patch cut at cell
    boundaries often carries a margin of sharp tissue, which spoils a deblurring model's
    estimate of the PSF.
    """
    image = ndimage.gaussian_filter(grey(pixels), PRESMOOTH_SIGMA_PX, mode="reflect")
    energy = ndimage.sobel(image, axis=1) ** 2 + ndimage.sobel(image, axis=0) ** 2
    rows = _keep(energy.mean(axis=1), image.var(axis=1), strip_px, factor)
    cols = _keep(energy.mean(axis=0), image.var(axis=0), strip_px, factor)
    return rows, cols


def _keep(energy: np.ndarray, variance: np.ndarray, strip_px: int, factor: float) -> slice:
    """The span of strips along one axis left after trimming sharp edge strips."""
    count = len(energy) // strip_px
    if count < 3:
        return slice(0, len(energy))
    strips = [
        float(energy[k * strip_px : (k + 1) * strip_px].mean())
        / max(float(variance[k * strip_px : (k + 1) * strip_px].mean()), MIN_VARIANCE)
        for k in range(count)
    ]
    limit = factor * float(np.median(strips))
    first, last = 0, count - 1
    while first < last - 1 and strips[first] > limit:
        first += 1
    while last > first + 1 and strips[last] > limit:
        last -= 1
    stop = len(energy) if last == count - 1 else (last + 1) * strip_px
    return slice(first * strip_px, stop)
