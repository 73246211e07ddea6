"""Physical forward models that turn a sharp image into a degraded one (numpy/scipy only).

Images are float arrays in [0, 1], shaped ``(H, W)`` or ``(H, W, C)``. PSFs are 2-D arrays
that sum to 1 with odd side lengths, centred on the middle pixel. Every random function
takes an explicit ``numpy.random.Generator`` so that results are reproducible.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage, signal

_SUPERSAMPLE = 16


def motion_length_px(speed_um_per_s: float, exposure_s: float, pixel_size_um: float) -> float:
    """Blur length in pixels of a stage moving during the exposure: ``v * T / pixel_size``."""
    return speed_um_per_s * exposure_s / pixel_size_um


def defocus_radius_px(
    defocus_um: float, numerical_aperture: float, pixel_size_um: float, immersion_index: float = 1.0
) -> float:
    """Geometric blur-circle radius in pixels: ``|dz| * tan(asin(NA / n)) / pixel_size``."""
    half_angle = np.arcsin(min(numerical_aperture / immersion_index, 0.999))
    return abs(defocus_um) * float(np.tan(half_angle)) / pixel_size_um


def _odd_size(extent: float) -> int:
    size = int(np.ceil(extent))
    return size + 1 if size % 2 == 0 else size


def motion_psf(length_px: float, angle_deg: float = 0.0) -> np.ndarray:
    """1-D box PSF of ``length_px`` pixels at ``angle_deg`` (0 = along x, 90 = along y).

    The segment is supersampled and each sample lands in the pixel it falls in (area
    rasterisation), so an integer length L along an axis gives exactly L taps of 1/L and a
    fractional length gives fractional end taps.
    """
    if length_px <= 1.0:
        return np.ones((1, 1))
    theta = np.deg2rad(angle_deg)
    dx, dy = np.cos(theta), np.sin(theta)
    size = _odd_size(length_px + 2)
    c = size // 2
    n = int(np.ceil(length_px * _SUPERSAMPLE))
    t = (np.arange(n) + 0.5) / n - 0.5
    cols = np.rint(c + t * length_px * dx).astype(int)
    rows = np.rint(c + t * length_px * dy).astype(int)
    psf = np.zeros((size, size))
    np.add.at(psf, (rows, cols), 1.0)
    return _trim(psf / psf.sum())


def disk_psf(radius_px: float) -> np.ndarray:
    """Uniform disk (geometric defocus) of ``radius_px``, anti-aliased by supersampling."""
    if radius_px <= 0.5:
        return np.ones((1, 1))
    size = _odd_size(2 * radius_px + 2)
    c = size // 2
    s = _SUPERSAMPLE
    coords = (np.arange(size * s) + 0.5) / s - 0.5 - c
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    inside = (xx**2 + yy**2 <= radius_px**2).astype(float)
    psf = inside.reshape(size, s, size, s).mean(axis=(1, 3))
    return _trim(psf / psf.sum())


def gaussian_psf(sigma_px: float, truncate: float = 3.5) -> np.ndarray:
    """Isotropic Gaussian PSF of standard deviation ``sigma_px``."""
    if sigma_px <= 0.1:
        return np.ones((1, 1))
    c = int(np.ceil(truncate * sigma_px))
    r = np.arange(-c, c + 1)
    g = np.exp(-(r**2) / (2 * sigma_px**2))
    psf = np.outer(g, g)
    return psf / psf.sum()


def defocus_psf(radius_px: float, kind: str = "disk") -> np.ndarray:
    """Defocus PSF: ``disk`` of ``radius_px`` or ``gaussian`` with the same second moment.

    A disk of radius r has per-axis variance r**2 / 4, so the matching Gaussian has
    sigma = r / 2.
    """
    if kind == "disk":
        return disk_psf(radius_px)
    if kind == "gaussian":
        return gaussian_psf(radius_px / 2.0)
    raise ValueError(f"unknown defocus PSF kind {kind!r}")


def _trim(psf: np.ndarray) -> np.ndarray:
    """Drop all-zero border rows/columns symmetrically, keeping the centre in the middle."""
    while psf.shape[0] > 1 and not psf[0].any() and not psf[-1].any():
        psf = psf[1:-1]
    while psf.shape[1] > 1 and not psf[:, 0].any() and not psf[:, -1].any():
        psf = psf[:, 1:-1]
    return psf


def combine_psfs(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """PSF of applying ``first`` then ``second`` (their full convolution)."""
    psf = signal.convolve2d(first, second, mode="full")
    return psf / psf.sum()


def psf_extent_px(psf: np.ndarray) -> float:
    """Equivalent blur length in pixels: ``sqrt(12 * (var_x + var_y))`` of the PSF.

    Equals L for a box of length L; 2.45 r for a disk of radius r; 4.9 sigma for a Gaussian.
    """
    yy, xx = np.indices(psf.shape, dtype=float)
    w = psf / psf.sum()
    my, mx = (w * yy).sum(), (w * xx).sum()
    var = (w * ((yy - my) ** 2 + (xx - mx) ** 2)).sum()
    return float(np.sqrt(12.0 * var))


def convolve(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Convolve each channel with ``psf`` using symmetric (mirror) boundary extension."""
    if psf.size == 1:
        return image.astype(np.float32, copy=True)
    ph, pw = psf.shape[0] // 2, psf.shape[1] // 2
    pad = [(ph, ph), (pw, pw)] + [(0, 0)] * (image.ndim - 2)
    padded = np.pad(image.astype(np.float64), pad, mode="symmetric")
    kernel = psf if image.ndim == 2 else psf[:, :, None]
    out = signal.fftconvolve(padded, kernel, mode="valid", axes=(0, 1))
    return out.astype(np.float32)


def add_gaussian_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation ``std`` (image units)."""
    if std <= 0:
        return image.astype(np.float32, copy=True)
    return (image + rng.normal(0.0, std, image.shape)).astype(np.float32)


def add_shot_noise(
    image: np.ndarray, peak_photons: float, dark_std_photons: float, rng: np.random.Generator
) -> np.ndarray:
    """Poisson shot noise at ``peak_photons`` for a value of 1, plus Gaussian dark noise.

    ``counts = Poisson(image * peak) + Normal(0, dark_std)``; returned as ``counts / peak``.
    """
    counts = rng.poisson(np.clip(image, 0, None) * peak_photons).astype(np.float64)
    if dark_std_photons > 0:
        counts += rng.normal(0.0, dark_std_photons, image.shape)
    return (counts / peak_photons).astype(np.float32)


def decimate(image: np.ndarray, factor: int) -> np.ndarray:
    """Keep every ``factor``-th pixel along both axes (the operator D)."""
    return image[::factor, ::factor]


def average_pool(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over non-overlapping ``factor x factor`` blocks (pixel binning)."""
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    x = image[:h, :w]
    shape = (h // factor, factor, w // factor, factor, *x.shape[2:])
    return x.reshape(shape).mean(axis=(1, 3)).astype(np.float32)


def low_resolution(
    image: np.ndarray,
    factor: int,
    sigma_px: float,
    noise_std: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Wide-field low-resolution model ``I = D(K * I) + N`` (paper 002).

    ``sigma_px`` is the Gaussian PSF in high-resolution pixels, ``factor`` the decimation.
    """
    blurred = convolve(image, gaussian_psf(sigma_px))
    return add_gaussian_noise(decimate(blurred, factor), noise_std, rng)


def shift_odd_lines(image: np.ndarray, shift_px: float) -> np.ndarray:
    """Shift every odd row by ``shift_px`` along x (bidirectional-scan phase error)."""
    out = image.astype(np.float32, copy=True)
    if shift_px == 0:
        return out
    shifts = (0.0, shift_px, *(0.0,) * (image.ndim - 2))
    out[1::2] = ndimage.shift(image[1::2], shifts, order=1, mode="nearest")
    return out


def _sine_positions(width: int, fill: float) -> np.ndarray:
    """Column positions (in linear-pixel units) sampled by a resonant mirror.

    Samples are uniform in time over the central ``fill`` fraction of a half period, so the
    beam position follows ``sin``: pixels near the line ends cover less tissue (stretched).
    """
    t = ((np.arange(width) + 0.5) / width - 0.5) * fill * np.pi
    u = np.sin(t) / np.sin(fill * np.pi / 2)
    return (u + 1) / 2 * width - 0.5


def sinusoidal_stretch(image: np.ndarray, fill: float) -> np.ndarray:
    """Resample rows as a resonant galvo would (``fill`` in (0, 1]; 0 = linear scan)."""
    if fill <= 0:
        return image.astype(np.float32, copy=True)
    x = _sine_positions(image.shape[1], fill)
    cols = np.arange(image.shape[1])
    return _resample_columns(image, x, cols)


def undo_sinusoidal_stretch(image: np.ndarray, fill: float) -> np.ndarray:
    """Inverse of :func:`sinusoidal_stretch` for a known mirror ``fill`` fraction."""
    if fill <= 0:
        return image.astype(np.float32, copy=True)
    x = _sine_positions(image.shape[1], fill)
    cols = np.arange(image.shape[1], dtype=float)
    return _resample_columns(image, np.interp(cols, x, np.arange(image.shape[1])), cols)


def _resample_columns(image: np.ndarray, positions: np.ndarray, cols: np.ndarray) -> np.ndarray:
    flat = image.reshape(image.shape[0], image.shape[1], -1)
    out = np.empty_like(flat, dtype=np.float32)
    for r in range(flat.shape[0]):
        for c in range(flat.shape[2]):
            out[r, :, c] = np.interp(positions, cols, flat[r, :, c])
    return out.reshape(image.shape)


def video_rate_scan(
    image: np.ndarray,
    peak_photons: float,
    dark_std_photons: float,
    line_shift_px: float,
    stretch_fill: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Video-rate bidirectional laser scanning (paper 001) of a high-resolution image.

    2x fewer pixels (2x2 binning of the signal), sinusoidal mirror-speed stretch along x,
    odd/even line shift, then Poisson shot noise plus Gaussian dark noise.
    """
    low = average_pool(image, 2)
    low = sinusoidal_stretch(low, stretch_fill)
    low = shift_odd_lines(low, line_shift_px)
    return add_shot_noise(low, peak_photons, dark_std_photons, rng)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Re-compress an image as a scanner would (8-bit JPEG at ``quality``)."""
    u8 = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(u8.squeeze()).save(buffer, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(buffer), dtype=np.float32) / 255.0
    return out.reshape(image.shape)


def blur(
    image: np.ndarray, psf: np.ndarray, noise_std: float, rng: np.random.Generator
) -> np.ndarray:
    """Blur with ``psf`` then add Gaussian noise: the motion / defocus / mixed forward model."""
    return add_gaussian_noise(convolve(image, psf), noise_std, rng)
