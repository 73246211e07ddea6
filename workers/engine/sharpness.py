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
COARSE_SIGMA_PX = 2.5
FLAT_STD = 0.015  # grey level in [0, 1]; JPEG noise on glass stays below it
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


def detail_ratio_map(pixels: np.ndarray, block_px: int = 32) -> np.ndarray:
    """Per ``block_px`` block: gradient energy after a light smoothing over that after a coarse one.

    Blur has already removed the detail that the coarse smoothing (sigma 2.5 px) removes, so
    the ratio is near 1-2 on blurred tissue and several times higher on sharp tissue, for any
    stain's contrast. It is taken along x and along y and the lower one kept: a motion
    streak removes the detail along one axis only, and its block must not read as sharp.
    Blocks without texture (grey standard deviation below ``FLAT_STD``: glass, a constant
    border) get infinity: they are not blurred tissue, and a deblurring model collapses on
    them. Blocks are whole; a remainder at the right or bottom is left out.
    """
    image = grey(pixels)
    light = ndimage.gaussian_filter(image, PRESMOOTH_SIGMA_PX, mode="reflect")
    heavy = ndimage.gaussian_filter(image, COARSE_SIGMA_PX, mode="reflect")
    rows, cols = image.shape[0] // block_px, image.shape[1] // block_px
    shape = (rows, block_px, cols, block_px)
    crop = (slice(0, rows * block_px), slice(0, cols * block_px))
    ratios = []
    for axis in (0, 1):  # a streak removes the detail along one axis only: the lower counts
        fine = ndimage.sobel(light, axis=axis)[crop] ** 2
        coarse = ndimage.sobel(heavy, axis=axis)[crop] ** 2
        fine_sum = fine.reshape(shape).sum(axis=(1, 3))
        coarse_sum = coarse.reshape(shape).sum(axis=(1, 3))
        ratios.append(fine_sum / np.maximum(coarse_sum, MIN_VARIANCE))
    ratio: np.ndarray = np.minimum(*ratios)
    flat = image[crop].reshape(shape).std(axis=(1, 3)) < FLAT_STD
    ratio[flat] = np.inf
    return ratio


def soft_core(
    pixels: np.ndarray,
    block_px: int = 32,
    factor: float = 1.5,
    reference: tuple[slice, slice] | None = None,
) -> tuple[slice, slice]:
    """(rows, cols) of ``pixels`` without edge margins much sharper than the rest.

    A blurred patch cut at cell boundaries often carries a margin of sharp tissue, which
    spoils a deblurring model's estimate of the PSF. Edge lines of blocks are dropped, the
    sharpest first, while the median detail ratio (:func:`detail_ratio_map`) along one is
    more than ``factor`` times the median over ``reference`` (pixel slices known to be
    blurred; default the whole image); at least two blocks stay each way.
    """
    ratio = detail_ratio_map(pixels, block_px)
    rows, cols = ratio.shape
    full = (slice(0, pixels.shape[0]), slice(0, pixels.shape[1]))
    if rows < 3 or cols < 3:
        return full
    known = ratio
    if reference is not None:
        r, c = reference
        blocks = (
            slice(r.start // block_px, max(-(-r.stop // block_px), r.start // block_px + 1)),
            slice(c.start // block_px, max(-(-c.stop // block_px), c.start // block_px + 1)),
        )
        known = ratio[blocks] if ratio[blocks].size else ratio
    limit = factor * float(np.median(known))
    top, bottom, left, right = 0, rows, 0, cols
    while True:
        edges = {}
        if bottom - top > 2:
            edges["top"] = np.median(ratio[top, left:right])
            edges["bottom"] = np.median(ratio[bottom - 1, left:right])
        if right - left > 2:
            edges["left"] = np.median(ratio[top:bottom, left])
            edges["right"] = np.median(ratio[top:bottom, right - 1])
        if not edges or max(edges.values()) <= limit:
            break
        sharpest = max(edges, key=lambda edge: edges[edge])
        top += sharpest == "top"
        bottom -= sharpest == "bottom"
        left += sharpest == "left"
        right -= sharpest == "right"
    row_stop = pixels.shape[0] if bottom == rows else bottom * block_px
    col_stop = pixels.shape[1] if right == cols else right * block_px
    return slice(top * block_px, row_stop), slice(left * block_px, col_stop)
