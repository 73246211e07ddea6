"""Classical restoration baselines (numpy FFT): Wiener, Richardson-Lucy, unsharp, cubic upsampling.

All are deterministic; deconvolutions use symmetric padding so image borders do not ring.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import fft, ndimage


def _otf(psf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Optical transfer function of a centred PSF for an FFT of ``shape``."""
    padded = np.zeros(shape, dtype=np.float32)
    padded[: psf.shape[0], : psf.shape[1]] = psf
    padded = np.roll(padded, (-(psf.shape[0] // 2), -(psf.shape[1] // 2)), axis=(0, 1))
    return fft.rfft2(padded)


def _pad(image: np.ndarray, psf: np.ndarray) -> tuple[np.ndarray, int]:
    p = 2 * max(psf.shape)
    width = [(p, p), (p, p)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image.astype(np.float32), width, mode="symmetric"), p


def _per_channel(image: np.ndarray) -> list[np.ndarray]:
    return [image] if image.ndim == 2 else [image[:, :, c] for c in range(image.shape[2])]


def _stack(channels: list[np.ndarray], like: np.ndarray) -> np.ndarray:
    out = channels[0] if like.ndim == 2 else np.stack(channels, axis=2)
    return out.astype(np.float32)


def wiener(blurred: np.ndarray, psf: np.ndarray, balance: float) -> np.ndarray:
    """Wiener deconvolution with a constant noise-to-signal ``balance``."""
    padded, p = _pad(blurred, psf)
    otf = _otf(psf, padded.shape[:2])
    gain = np.conj(otf) / (np.abs(otf) ** 2 + balance)
    chans = [fft.irfft2(fft.rfft2(c) * gain, s=c.shape) for c in _per_channel(padded)]
    return _stack([c[p:-p, p:-p] for c in chans], blurred)


def richardson_lucy_steps(blurred: np.ndarray, psf: np.ndarray, iterations: int) -> Iterator:
    """Yield ``(iteration, estimate)`` of Richardson-Lucy deconvolution, 1..``iterations``."""
    padded, p = _pad(np.clip(blurred, 1e-4, None), psf)
    otf = _otf(psf, padded.shape[:2])
    chans = _per_channel(padded)
    estimates = [c.copy() for c in chans]
    for i in range(1, iterations + 1):
        for k, (c, e) in enumerate(zip(chans, estimates, strict=True)):
            reblurred = fft.irfft2(fft.rfft2(e) * otf, s=e.shape)
            ratio = c / np.maximum(reblurred, 1e-6)
            estimates[k] = e * fft.irfft2(fft.rfft2(ratio) * np.conj(otf), s=e.shape)
        yield i, _stack([e[p:-p, p:-p] for e in estimates], blurred)


def richardson_lucy(blurred: np.ndarray, psf: np.ndarray, iterations: int) -> np.ndarray:
    """Richardson-Lucy deconvolution after ``iterations`` multiplicative updates."""
    result = blurred.astype(np.float32)
    for _, result in richardson_lucy_steps(blurred, psf, iterations):  # noqa: B007
        pass
    return result


def unsharp_mask(image: np.ndarray, sigma: float, amount: float) -> np.ndarray:
    """``image + amount * (image - gaussian(image, sigma))`` built on scipy's Gaussian filter."""
    sigmas = (sigma, sigma) + (0,) * (image.ndim - 2)
    low = ndimage.gaussian_filter(image.astype(np.float64), sigmas)
    return (image + amount * (image - low)).astype(np.float32)


def gaussian_smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian denoising filter (per channel)."""
    sigmas = (sigma, sigma) + (0,) * (image.ndim - 2)
    return ndimage.gaussian_filter(image.astype(np.float64), sigmas).astype(np.float32)


def cubic_upsample(image: np.ndarray, factor: int, offset: float = 0.0) -> np.ndarray:
    """Cubic-spline (bicubic) upsampling by ``factor`` with the sampling geometry given.

    High-resolution pixel ``x`` maps to low-resolution coordinate ``(x - offset) / factor``:
    ``offset = 0`` for decimation (``D`` keeps pixel 0 of every block) and
    ``(factor - 1) / 2`` for block averaging (binning).
    """
    h, w = image.shape[0] * factor, image.shape[1] * factor
    ys = (np.arange(h) - offset) / factor
    xs = (np.arange(w) - offset) / factor
    grid = np.meshgrid(ys, xs, indexing="ij")
    chans = [
        ndimage.map_coordinates(c.astype(np.float64), grid, order=3, mode="reflect")
        for c in _per_channel(image)
    ]
    return _stack(chans, image)
