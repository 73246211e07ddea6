"""The motion deconvolution front end and its blur statistic, with no trained weights.

Each is plain tensor algebra (MatMul, Cos, Gather, elementwise), so the whole generator
that uses it exports to one ONNX graph with dynamic batch, height and width.
"""

from __future__ import annotations

import torch
from torch import nn


class MotionWiener(nn.Module):
    """1-D Wiener deconvolution of a box blur along x or y.

    The Wiener filter ``H / (H^2 + balance)`` of the area-rasterised box is applied along the
    axis of the mirror-padded image as a circulant matrix product: the same operation as an
    FFT Wiener filter, but only MatMul, Cos and Gather, so it exports to ONNX with dynamic
    batch, height and width.
    """

    min_size_px = 64  # a 32 px mirror pad, and lags up to max_length + 1 in the estimator
    noise_fractions = (0.0, 0.3, 1.0, 3.0)  # noise floors tried, times the high-band power

    def __init__(self, max_length: int = 36, pad: int = 32) -> None:
        super().__init__()
        self.max_length, self.pad = max_length, pad
        half = max_length // 2 + 1
        self.register_buffer("offsets", torch.arange(-half, half + 1).float(), persistent=False)
        candidates = torch.arange(20, 10 * max_length + 1).float() / 10  # 2.0 .. max_length px
        self.register_buffer("candidates", candidates, persistent=False)

    def box(self, length: torch.Tensor) -> torch.Tensor:
        """Area-rasterised centred boxes ``[N, taps]`` of ``length`` px (as ``motion_psf``)."""
        psf = (length[:, None] / 2 + 0.5 - self.offsets.abs()).clamp(0.0, 1.0)
        return psf / psf.sum(dim=1, keepdim=True)

    def circulant(
        self, psf: torch.Tensor, active: torch.Tensor, size: int, balance: float
    ) -> torch.Tensor:
        """Wiener matrices ``[N, 1, size, size]`` (identity where ``active`` is 0).

        ``out = x @ M`` filters the rows of ``x`` circularly with ``H / (H^2 + balance)``.
        """
        m = torch.arange(size, device=psf.device).float()
        omega = 2 * torch.pi * m / size
        response = psf @ torch.cos(self.offsets[:, None] * omega[None, :])  # [N, size]
        gain = response / (response * response + balance)
        gain = gain * active[:, None] + (1 - active[:, None])
        taps = gain @ torch.cos(omega[:, None] * m[None, :]) / size  # [N, size]
        idx = torch.arange(size, device=psf.device)
        index = torch.remainder(idx[None, :] - idx[:, None], size)
        return taps[:, index][:, None]

    def response(self, length: torch.Tensor, size: int, like: torch.Tensor) -> torch.Tensor:
        """Cosine response ``[N, size]`` of each box at the DCT frequencies ``pi k / size``."""
        omega = torch.pi * torch.arange(size, device=like.device).to(like.dtype) / size
        return self.box(length) @ torch.cos(self.offsets[:, None] * omega[None, :])

    def fit_length(
        self, image: torch.Tensor, coarse: torch.Tensor, horizontal: torch.Tensor
    ) -> torch.Tensor:
        """The box length ``[N]`` whose spectrum best explains the blurred axis, near ``coarse``.

        A box blur multiplies the luminance power spectrum along its axis by ``H(w)^2``,
        which has zeros near ``2 pi k / L``; the axis across the blur keeps the tissue's own
        spectrum. With that as the reference, each candidate length (0.1 px steps, within
        ``max(2, 0.3 coarse)`` px of the learned ``coarse`` estimate, which rules out
        harmonics) predicts the blurred spectrum as ``H^2 (P_across - n) + n`` for a few
        noise floors ``n``. The best fit of the log spectra wins, up to a straight line in
        frequency, since the two axes of the tissue may differ in contrast and slope.
        """
        grey = image.mean(dim=1)
        rows, cols = grey.shape[1], grey.shape[2]
        # DCT power along one axis, averaged over the other (Parseval: no 2-D DCT needed);
        # the fit runs in float64, where torch and ONNX Runtime rank the lengths alike
        along_x = ((grey @ dct_matrix(cols, grey).transpose(0, 1)) ** 2).mean(dim=1).double()
        along_y = ((dct_matrix(rows, grey) @ grey) ** 2).mean(dim=2).double()
        lengths = self.candidates.double()
        losses = [
            self._spectrum_misfit(along_x, along_y, lengths),
            self._spectrum_misfit(along_y, along_x, lengths),
        ]
        misfit = torch.where(horizontal[:, None] > 0.5, losses[0], losses[1])
        reach = torch.clamp(0.3 * coarse, min=2.0)[:, None]
        distance = (lengths[None, :] - coarse[:, None]).abs()
        # where the spectrum cannot tell lengths apart (a noise floor above the whole
        # reference: every fit alike), the length nearest the coarse one wins the tie
        misfit = misfit * (1 + 1e-6 * distance / reach)
        masked = torch.where(distance <= reach, misfit, misfit.new_full((), 1e9))
        # a parabola through the best candidate and its neighbours (even those out of reach)
        # gives the sub-step length
        k = masked.argmin(dim=1, keepdim=True).clamp(1, lengths.shape[0] - 2)
        left, centre, right = (misfit.gather(1, k + d)[:, 0] for d in (-1, 0, 1))
        curvature = (left - 2 * centre + right).clamp(min=1e-12)
        shift = (0.5 * (left - right) / curvature).clamp(-0.5, 0.5)
        return (lengths[k[:, 0]] + shift * (lengths[1] - lengths[0])).to(image.dtype)

    def _spectrum_misfit(
        self, blurred: torch.Tensor, across: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """``[N, candidates]`` mean squared log-spectrum error, best over the noise floors."""
        size = blurred.shape[1]
        # the reference spectrum at the blurred axis's frequencies (sizes may differ)
        index = torch.arange(size, device=blurred.device) * across.shape[1] // size
        reference = across.gather(1, index[None, :].expand(across.shape[0], -1))
        blurred, reference = blurred[:, 1:], reference[:, 1:]  # drop the mean
        gain = self.response(lengths, size, blurred)[:, 1:] ** 2  # [candidates, size - 1]
        level = reference.narrow(1, size // 2, reference.shape[1] - size // 2).mean(dim=1)
        observed = torch.log(blurred + 1e-12)[:, None, :]
        # a constant and a slope, fitted out of each residual below
        slope = torch.arange(1, size, device=blurred.device).to(blurred.dtype)
        slope = slope - slope.mean()  # orthogonal to a constant
        slope = slope / torch.sqrt((slope * slope).sum())
        best = []
        for fraction in self.noise_fractions:
            floor = (fraction * level)[:, None, None]
            predicted = gain[None] * torch.relu(reference[:, None, :] - floor) + floor
            residual = observed - torch.log(predicted + 1e-12)
            residual = residual - residual.mean(dim=2, keepdim=True)
            residual = residual - (residual @ slope)[..., None] * slope
            best.append((residual**2).mean(dim=2))
        return torch.stack(best).amin(dim=0)

    def forward(
        self,
        image: torch.Tensor,
        length: torch.Tensor,
        horizontal: torch.Tensor,
        balances: tuple[float, ...] = (2e-3, 1e-2),
    ) -> list[torch.Tensor]:
        """Deconvolved images, one per balance; ``horizontal`` in [0, 1] weighs x against y."""
        psf = self.box(length)
        padded = _mirror_pad(_mirror_pad(image, 3, self.pad), 2, self.pad)
        rows, cols = padded.shape[2], padded.shape[3]
        top, left = (rows - image.shape[2]) // 2, (cols - image.shape[3]) // 2
        outs = []
        for balance in balances:
            out = padded @ self.circulant(psf, horizontal, cols, balance)
            # the matrices are symmetric (even PSF, real response): no transpose needed
            out = self.circulant(psf, 1 - horizontal, rows, balance) @ out
            outs.append(out.narrow(2, top, image.shape[2]).narrow(3, left, image.shape[3]))
        return outs


def gradient_autocorrelation(image: torch.Tensor, lags: int) -> torch.Tensor:
    """Normalised autocorrelation of the luminance gradient, ``[N, 2, lags]``.

    Row 0 is along x (of d/dx), row 1 along y (of d/dy), for lags 1 .. ``lags``. Blur
    shapes it: a box of length L leaves a dip at lag L along its axis
    (``d(x) = (s(x) - s(x - L)) / L``). Texture of a similar size blurs the dip, so a plain
    arg-min overestimates short blurs; a small learned head reads the curves instead.
    """
    grey = image.mean(dim=1)
    curves = []
    for axis in (2, 1):
        n = grey.shape[axis] - 1
        d = grey.narrow(axis, 1, n) - grey.narrow(axis, 0, n)
        d = d - d.mean(dim=(1, 2), keepdim=True)
        energy = (d * d).mean(dim=(1, 2)) + 1e-12
        # one shifted view per lag: past the end the zero padding adds nothing to the sum
        padded = torch.cat([d, torch.zeros_like(d.narrow(axis, 0, lags))], dim=axis)
        across = d.shape[3 - axis]
        values = []
        for lag in range(1, lags + 1):
            total = (padded.narrow(axis, lag, n) * d).sum(dim=(1, 2))
            values.append(total / ((n - lag) * across) / energy)
        curves.append(torch.stack(values, dim=1))
    return torch.stack(curves, dim=1)


def _mirror_pad(x: torch.Tensor, dim: int, pad: int) -> torch.Tensor:
    """Symmetric extension (edge pixel repeated, as numpy's ``symmetric``) along ``dim``."""
    n = x.shape[dim]
    before = x.narrow(dim, 0, pad).flip(dim)
    after = x.narrow(dim, n - pad, pad).flip(dim)
    return torch.cat([before, x, after], dim=dim)


def dct_matrix(size: int, like: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``[size, size]``: ``coefficients = D @ signal``.

    Built from ``arange`` (not Python numbers) so that the size stays dynamic in ONNX.
    """
    n = torch.arange(size, device=like.device).to(like.dtype)
    return _dct_rows(n, n, n[-1] + 1)


def _dct_rows(rows: torch.Tensor, n: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Rows ``rows`` and columns ``n`` of the orthonormal DCT-II matrix of ``count`` points."""
    k = rows[:, None]
    matrix = torch.cos(torch.pi * k * (2 * n[None, :] + 1) / (2 * count))
    scale = torch.where(k == 0, torch.sqrt(1.0 / count), torch.sqrt(2.0 / count))
    return matrix * scale


def _dct_halves(size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The even and the odd rows of the ``size``-point DCT-II matrix, first half of columns.

    Each is ``[size / 2, size / 2]``; ``size`` must be even. Row ``k`` of the full matrix is
    even or odd under ``n -> size - 1 - n`` as ``k`` is, so these two halves are all of it.
    """
    even = torch.arange(0, size, 2, device=like.device).to(like.dtype)  # k = 0, 2, ...
    n, count = even / 2, even[-1] + 2
    return _dct_rows(even, n, count), _dct_rows(even + 1, n, count)


def frequency_order(size: int, like: torch.Tensor) -> torch.Tensor:
    """The coefficient index at each position of :func:`folded_dct`: 0, 2, 4, ..., 1, 3, ...."""
    ks = [torch.arange(start, size, 2, device=like.device) for start in (0, 1)]
    return torch.cat(ks).to(like.dtype)


def _apply(matrix: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """``matrix @ x`` along ``dim`` of ``x`` (-1 or -2)."""
    return x @ matrix.transpose(0, 1) if dim == -1 else matrix @ x


def folded_dct(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Orthonormal DCT-II of ``x`` along ``dim`` (-1 or -2), in :func:`frequency_order`.

    An even length is folded once: the even coefficients are the transform of
    ``x[n] + x[size - 1 - n]`` and the odd ones that of the difference, two half-size
    matrix products, half the work of the dense one. Keeping the two halves apart (even
    coefficients first) spares a strided interleave. An odd length takes the dense matrix,
    its rows in the same order. In ONNX the folded form is what runs: even sizes only.
    """
    size = x.shape[dim]
    if size % 2:
        order = frequency_order(size, x).long()
        return _apply(dct_matrix(size, x)[order], x, dim)
    even, odd = _dct_halves(size, x)
    first, last = x.narrow(dim, 0, size // 2), x.narrow(dim, size // 2, size // 2).flip(dim)
    return torch.cat([_apply(even, first + last, dim), _apply(odd, first - last, dim)], dim=dim)


def folded_idct(coefficients: torch.Tensor, dim: int) -> torch.Tensor:
    """The signal whose :func:`folded_dct` along ``dim`` (-1 or -2) is ``coefficients``."""
    size = coefficients.shape[dim]
    if size % 2:
        order = frequency_order(size, coefficients).long()
        return _apply(dct_matrix(size, coefficients)[order].transpose(0, 1), coefficients, dim)
    even, odd = _dct_halves(size, coefficients)
    half = size // 2
    sums = _apply(even.transpose(0, 1), coefficients.narrow(dim, 0, half), dim)
    differences = _apply(odd.transpose(0, 1), coefficients.narrow(dim, half, half), dim)
    return torch.cat([sums + differences, (sums - differences).flip(dim)], dim=dim)


def binning_matrix(size: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """``[bins, size]`` matrix that averages ``size`` samples into ``bins`` equal bands.

    Dynamic in ONNX like :func:`dct_matrix`; ``size`` must be at least ``bins``.
    """
    n = torch.arange(size, device=like.device)
    count = n[-1] + 1
    band = torch.div(n * bins, count, rounding_mode="floor")
    member = (band[None, :] == torch.arange(bins, device=like.device)[:, None]).to(like.dtype)
    return member / member.sum(dim=1, keepdim=True)


def binned_log_power(image: torch.Tensor, bins: int) -> torch.Tensor:
    """Log power of the luminance's DCT-II, averaged into ``bins x bins`` frequency bands.

    ``[N, C, H, W]`` -> ``[N, bins, bins]``, band (i, j) covering vertical frequencies
    ``i / bins .. (i + 1) / bins`` and horizontal ones ``j / bins ..`` of the Nyquist
    frequency. Blur shows here directly: a box along one axis lowers the power along that
    axis only, a defocus PSF lowers it in every direction.
    """
    grey = image.mean(dim=1)
    rows, cols = grey.shape[1], grey.shape[2]
    coefficients = dct_matrix(rows, grey) @ grey @ dct_matrix(cols, grey).transpose(0, 1)
    log_power = torch.log(coefficients**2 + 1e-7)
    return (
        binning_matrix(rows, bins, grey)
        @ log_power
        @ binning_matrix(cols, bins, grey).transpose(0, 1)
    )


class DefocusWiener(nn.Module):
    """Wiener deconvolution of symmetric 2-D PSFs (disk or Gaussian defocus) in the DCT domain.

    The DCT-II diagonalises convolution with a symmetric kernel under half-sample
    symmetric (mirror) boundaries, the boundary the degradations use, so
    ``D^T (W * (D X D^T)) D`` is an exact Wiener filter of the whole input, with
    ``W = H / (H^2 + balance)`` and ``H`` the PSF's cosine response. The same coefficients
    give :meth:`radial_profile`, the statistic a learned head reads the PSF from: a disk of
    radius r puts rings of zeros into the spectrum (the first at 3.83 / r rad/px), a
    Gaussian makes it fall smoothly.
    """

    def __init__(self, half: int = 24, bins: int = 64) -> None:
        super().__init__()
        self.half, self.bins = half, bins
        offsets = torch.arange(-half, half + 1).float()
        distance = torch.sqrt(offsets[:, None] ** 2 + offsets[None, :] ** 2)
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("distance", distance, persistent=False)

    @staticmethod
    def transform(image: torch.Tensor) -> torch.Tensor:
        """DCT-II coefficients of each channel, in :func:`frequency_order` along both axes."""
        return folded_dct(folded_dct(image, -1), -2)

    def radial_profile(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``[N, bins]``: log10 mean luminance power in rings 1 .. bins-1, then their mean.

        Ring j spans ``[j, j + 1) * pi / bins`` rad/px (ring 0, the mean brightness, and
        frequencies beyond pi are left out). The ring values have their mean subtracted
        (the spectrum's shape, not the image's contrast); that mean is the last element.
        """
        grey = coefficients.mean(dim=1).flatten(1)  # [N, rows * cols]
        rows, cols = coefficients.shape[2], coefficients.shape[3]
        wy = frequency_order(rows, grey) / rows
        wx = frequency_order(cols, grey) / cols
        radius = torch.sqrt(wy[:, None] ** 2 + wx[None, :] ** 2).flatten()  # in units of pi
        ring = (radius * self.bins).floor().clamp(max=self.bins).long()  # bins = beyond pi
        index = ring[None, :].expand(grey.shape[0], -1)
        zeros = grey.new_zeros(grey.shape[0], self.bins + 1)
        power = zeros.scatter_add(1, index, grey * grey)
        count = zeros.scatter_add(1, index, torch.ones_like(grey)).clamp(min=1.0)
        profile = torch.log10(power / count + 1e-10)[:, 1 : self.bins]  # without DC and beyond
        level = profile.mean(dim=1, keepdim=True)
        return torch.cat([profile - level, level], dim=1)

    def disk(self, radius: torch.Tensor) -> torch.Tensor:
        """Anti-aliased disks ``[N, S, S]`` of ``radius`` px (area coverage, as ``disk_psf``)."""
        psf = (radius[:, None, None] + 0.5 - self.distance).clamp(0.0, 1.0)
        return psf / psf.sum(dim=(1, 2), keepdim=True)

    def gaussian(self, radius: torch.Tensor) -> torch.Tensor:
        """Gaussians ``[N, S, S]`` with the second moment of a disk of ``radius`` (sigma r/2)."""
        sigma = (radius / 2).clamp(min=0.2)[:, None, None]
        psf = torch.exp(-(self.distance**2) / (2 * sigma**2))
        return psf / psf.sum(dim=(1, 2), keepdim=True)

    def response(self, psf: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """Cosine response ``[N, 1, rows, cols]`` of symmetric PSFs, ordered as transforms are."""
        wy = torch.pi * frequency_order(rows, psf) / rows
        wx = torch.pi * frequency_order(cols, psf) / cols
        cos_y = torch.cos(wy[:, None] * self.offsets[None, :])  # [rows, S]
        cos_x = torch.cos(self.offsets[:, None] * wx[None, :])  # [S, cols]
        return (cos_y @ psf @ cos_x)[:, None]

    @staticmethod
    def inverse(coefficients: torch.Tensor) -> torch.Tensor:
        """The image whose DCT-II coefficients these are (undoes :meth:`transform`)."""
        return folded_idct(folded_idct(coefficients, -1), -2)

    @staticmethod
    def gain(response: torch.Tensor, balance: float) -> torch.Tensor:
        """The Wiener filter ``H / (H^2 + balance)`` for a :meth:`response`."""
        return response / (response * response + balance)

    def deconvolve(
        self, coefficients: torch.Tensor, psf: torch.Tensor, balance: float
    ) -> torch.Tensor:
        """The Wiener estimate for ``psf`` ``[N, S, S]`` from :meth:`transform`'s output."""
        h = self.response(psf, coefficients.shape[2], coefficients.shape[3])
        return self.inverse(coefficients * self.gain(h, balance))
