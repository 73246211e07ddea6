"""Image-quality metrics (numpy/scipy): PSNR, SSIM, Pearson correlation, no-reference sharpness."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def psnr(image: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB."""
    mse = float(np.mean((image.astype(np.float64) - reference) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def ssim(image: np.ndarray, reference: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004): Gaussian window sigma 1.5, channel mean."""
    x = np.atleast_3d(image).astype(np.float64)
    y = np.atleast_3d(reference).astype(np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    scores = []
    for c in range(x.shape[2]):
        a, b = x[:, :, c], y[:, :, c]

        def blur(v: np.ndarray) -> np.ndarray:
            return ndimage.gaussian_filter(v, 1.5, truncate=3.5)

        ma, mb = blur(a), blur(b)
        saa, sbb, sab = blur(a * a) - ma**2, blur(b * b) - mb**2, blur(a * b) - ma * mb
        s = ((2 * ma * mb + c1) * (2 * sab + c2)) / ((ma**2 + mb**2 + c1) * (saa + sbb + c2))
        scores.append(s[5:-5, 5:-5].mean())
    return float(np.mean(scores))


def pcc(image: np.ndarray, reference: np.ndarray) -> float:
    """Pearson correlation coefficient over all pixels and channels."""
    return float(np.corrcoef(image.ravel().astype(np.float64), reference.ravel())[0, 1])


def full_reference(image: np.ndarray, reference: np.ndarray, border: int = 16) -> dict[str, float]:
    """PSNR, SSIM and PCC after clipping to [0, 1] and dropping ``border`` px on each side."""
    crop = (slice(border, -border or None), slice(border, -border or None))
    x = np.clip(image, 0.0, 1.0)[crop]
    y = reference[crop]
    return {"psnr": psnr(x, y), "ssim": ssim(x, y), "pcc": pcc(x, y)}


def _grey(image: np.ndarray) -> np.ndarray:
    return np.atleast_3d(image).mean(axis=2).astype(np.float64)


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the Laplacian (no-reference sharpness; higher is sharper)."""
    return float(ndimage.laplace(_grey(image)).var())


def tenengrad(image: np.ndarray) -> float:
    """Mean squared Sobel gradient magnitude (Tenengrad)."""
    g = _grey(image)
    return float(np.mean(ndimage.sobel(g, 0) ** 2 + ndimage.sobel(g, 1) ** 2))


def high_frequency_share(image: np.ndarray, cutoff: float = 0.25) -> float:
    """Share of spectral power above ``cutoff`` cycles/pixel (mean removed)."""
    g = _grey(image)
    power = np.abs(np.fft.fft2(g - g.mean())) ** 2
    fy = np.fft.fftfreq(g.shape[0])[:, None]
    fx = np.fft.fftfreq(g.shape[1])[None, :]
    high = np.hypot(fy, fx) > cutoff
    return float(power[high].sum() / max(power.sum(), 1e-12))


def no_reference(image: np.ndarray) -> dict[str, float]:
    """The no-reference sharpness measures of the brief, for real blurred images."""
    return {
        "laplacian_variance": laplacian_variance(image),
        "tenengrad": tenengrad(image),
        "high_frequency_share": high_frequency_share(image),
    }
