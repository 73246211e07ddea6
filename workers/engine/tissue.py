"""Tissue detection on a low-resolution view, so background tiles can be skipped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from workers.engine.geometry import Box

MIN_CONTRAST = 12.0  # grey levels between the two Otsu classes; below: no background found


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of uint8 values (maximises between-class variance)."""
    return _otsu(np.bincount(values.ravel(), minlength=256).astype(np.float64))


def _otsu(hist: np.ndarray) -> float:
    """Otsu's threshold of a 256-bin histogram."""
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    sums = np.cumsum(hist * np.arange(256))
    mean_low = sums / np.maximum(weight_low, 1)
    mean_high = (sums[-1] - sums) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(np.argmax(between))


def detect_tissue(thumbnail: np.ndarray) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail.

    Brightfield (bright background): tissue is darker or more saturated than background.
    Fluorescence (dark background): tissue is brighter. An image without a clear
    background (one Otsu class) counts as all tissue.
    """
    red, green, blue = (thumbnail[..., c] for c in range(3))  # channel by channel: fast
    grey = ((red.astype(np.int16) + green + blue) // 3).astype(np.int16)
    counts = np.bincount(grey.ravel(), minlength=256)
    bright_background = np.searchsorted(np.cumsum(counts), grey.size / 2) > 127  # median
    if bright_background:
        lightest = np.maximum(np.maximum(red, green), blue)
        saturation = lightest.astype(np.int16) - np.minimum(np.minimum(red, green), blue)
        signal_u8 = ((255 - grey + saturation) // 2).clip(0, 255).astype(np.uint8)
        counts = np.bincount(signal_u8.ravel(), minlength=256)
    else:
        signal_u8 = grey.astype(np.uint8)
    hist = counts.astype(np.float64)
    threshold = int(_otsu(hist))
    levels = np.arange(256)
    low, high = hist[: threshold + 1], hist[threshold + 1 :]
    if high.sum() == 0 or low.sum() == 0:
        return np.ones(grey.shape, dtype=bool)
    contrast = (high @ levels[threshold + 1 :]) / high.sum() - (
        low @ levels[: threshold + 1]
    ) / low.sum()
    if contrast < MIN_CONTRAST:
        return np.ones(grey.shape, dtype=bool)
    mask = signal_u8 > threshold
    mask = ndimage.binary_opening(mask, iterations=1)
    dilated: np.ndarray = ndimage.binary_dilation(mask, iterations=2)
    return dilated


@dataclass(frozen=True)
class TissueMap:
    """A tissue mask and the level-0 pixels each of its pixels covers."""

    mask: np.ndarray
    downsample: float

    def fraction(self, l0_box: Box) -> float:
        """Share of tissue pixels under a level-0 box."""
        d = self.downsample
        rows = slice(int(l0_box.y // d), int(np.ceil(l0_box.bottom / d)))
        cols = slice(int(l0_box.x // d), int(np.ceil(l0_box.right / d)))
        window = self.mask[rows, cols]
        return float(window.mean()) if window.size else 0.0

    def save(self, path: Path) -> None:
        """Store as a compressed ``.npz``."""
        np.savez_compressed(path, mask=self.mask, downsample=self.downsample)

    @classmethod
    def load(cls, path: Path) -> TissueMap:
        """Read a map written by :meth:`save`."""
        with np.load(path) as data:
            return cls(mask=data["mask"], downsample=float(data["downsample"]))
