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
    """Sharpness of an image (uint8 or float in [0, 1], grey or RGB)."""
    image = ndimage.gaussian_filter(grey(pixels), PRESMOOTH_SIGMA_PX, mode="reflect")
    variance = max(float(image.var()), MIN_VARIANCE)
    laplacian = ndimage.laplace(image, mode="reflect")
    gx = ndimage.sobel(image, axis=1, mode="reflect")
    gy = ndimage.sobel(image, axis=0, mode="reflect")
    return Sharpness(
        laplacian_var=float(laplacian.var()) / variance,
        tenengrad=float(np.mean(gx * gx + gy * gy)) / variance,
        hf_share=high_frequency_share(image),
    )


def high_frequency_share(image: np.ndarray) -> float:
    """Share of the (mean-removed) power spectrum above ``HIGH_FREQUENCY`` cycles per pixel."""
    power = np.abs(np.fft.rfft2(image - image.mean())) ** 2
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.rfftfreq(image.shape[1])[None, :]
    total = float(power.sum())
    if total <= 0.0:
        return 0.0
    return float(power[np.hypot(fy, fx) > HIGH_FREQUENCY].sum()) / total
