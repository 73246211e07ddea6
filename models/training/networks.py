"""The torch networks: U-Net deblurring generator, residual SR generator, classifier, critic."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.training.deconvolution import (
    DefocusWiener,
    MotionWiener,
    binned_log_power,
    gradient_autocorrelation,
)


def conv3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with 'same' padding."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)


class _SpaceToDepth(torch.autograd.Function):
    """``F.pixel_unshuffle(x, 2)`` that exports as ONNX SpaceToDepth plus a channel Gather."""

    @staticmethod
    def forward(ctx: object, image: torch.Tensor, channels: int) -> torch.Tensor:
        return F.pixel_unshuffle(image, 2)

    @staticmethod
    def symbolic(g: object, image: object, channels: int) -> object:
        folded = g.op("SpaceToDepth", image, blocksize_i=2)  # channel (2 * dy + dx) * C + c
        order = torch.tensor([b * channels + c for c in range(channels) for b in range(4)])
        return g.op("Gather", folded, g.op("Constant", value_t=order), axis_i=1)


def pixel_unshuffle2(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Space-to-depth by 2 of ``channels`` channels, in torch's order (``c * 4 + 2 * dy + dx``).

    The TorchScript exporter writes ``F.pixel_unshuffle`` as a 6-D Transpose, which took
    14 % of ``deblur-defocus``'s time in ONNX Runtime (CPU); ONNX's SpaceToDepth orders the
    channels block-first, so a constant Gather puts them back in torch's order. Same numbers,
    about half the time for the unshuffle and the convolution after it.
    """
    if torch.onnx.is_in_onnx_export():
        return _SpaceToDepth.apply(image, channels)
    return F.pixel_unshuffle(image, 2)


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by a leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            conv3(in_ch, out_ch),
            nn.LeakyReLU(0.1, inplace=True),
            conv3(out_ch, out_ch),
            nn.LeakyReLU(0.1, inplace=True),
        )


class UNetDeblur(nn.Module):
    """U-Net generator with skip connections and a global residual.

    The input is first folded by pixel-unshuffle (space-to-depth, factor 2), so the finest
    level runs at half resolution; this halves the cost and doubles the receptive field.
    Decoder upsampling is bilinear resize followed by a convolution (no transposed
    convolutions, hence no checkerboard artifacts); the output is unfolded by pixel shuffle.
    Height and width must be multiples of ``2 ** levels``.
    """

    def __init__(
        self, channels: int = 3, base: int = 24, levels: int = 3, in_channels: int | None = None
    ) -> None:
        super().__init__()
        self.channels = channels
        self.in_channels = in_channels or channels
        self.levels = levels
        widths = [base * 2**i for i in range(levels)]
        self.head = DoubleConv(self.in_channels * 4, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(conv3(widths[i], widths[i + 1], stride=2), nn.LeakyReLU(0.1, True))
            for i in range(levels - 1)
        )
        self.enc = nn.ModuleList(
            DoubleConv(widths[i + 1], widths[i + 1]) for i in range(levels - 1)
        )
        self.up = nn.ModuleList(conv3(widths[i + 1], widths[i]) for i in range(levels - 1))
        self.dec = nn.ModuleList(DoubleConv(widths[i] * 2, widths[i]) for i in range(levels - 1))
        self.tail = conv3(widths[0], channels * 4)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return the restored image, same shape as the input."""
        return self.residual(image, image)

    def residual(self, features: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """``start`` plus the correction computed from ``features`` (``in_channels``)."""
        x = self.head(pixel_unshuffle2(features, self.in_channels))
        skips = [x]
        for down, enc in zip(self.down, self.enc, strict=True):
            x = enc(down(x))
            skips.append(x)
        skips.pop()
        for i in reversed(range(self.levels - 1)):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = F.leaky_relu(self.up[i](x), 0.1)
            x = self.dec[i](torch.cat([x, skips[i]], dim=1))
        return start + F.pixel_shuffle(self.tail(x), 2)


class ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip (no batch norm, as in EDSR)."""

    def __init__(self, width: int, res_scale: float = 0.2) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3(width, width), nn.ReLU(inplace=True), conv3(width, width))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update."""
        return x + self.res_scale * self.body(x)


class SRResNet(nn.Module):
    """Residual super-resolution generator with pixel-shuffle upsampling (x2 or x4).

    Output = bicubic-free learned upsampling plus a nearest-neighbour skip of the input, so
    the network only learns the residual detail.
    """

    def __init__(self, channels: int = 3, scale: int = 4, width: int = 32, blocks: int = 8) -> None:
        super().__init__()
        if scale not in (2, 4):
            raise ValueError("scale must be 2 or 4")
        self.channels, self.scale, self.width, self.blocks = channels, scale, width, blocks
        self.head = conv3(channels, width)
        self.body = nn.Sequential(*(ResBlock(width) for _ in range(blocks)), conv3(width, width))
        ups: list[nn.Module] = []
        for _ in range(scale // 2 - 1):
            ups += [conv3(width, width * 4), nn.PixelShuffle(2), nn.LeakyReLU(0.1, True)]
        ups += [conv3(width, channels * 4), nn.PixelShuffle(2)]
        self.upsample = nn.Sequential(*ups)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return the image upscaled by ``scale``."""
        x = self.head(image)
        x = x + self.body(x)
        base = F.interpolate(image, scale_factor=float(self.scale), mode="nearest")
        return base + self.upsample(x)

    def deepened(self, extra_blocks: int) -> SRResNet:
        """A copy with ``extra_blocks`` more residual blocks that computes exactly the same.

        The new blocks come after the old ones and start as identities (their last
        convolution is zero), so fine-tuning the deeper network starts from this one's output.
        """
        deeper = SRResNet(self.channels, self.scale, self.width, self.blocks + extra_blocks)
        deeper.head.load_state_dict(self.head.state_dict())
        deeper.upsample.load_state_dict(self.upsample.state_dict())
        for i in range(self.blocks):
            deeper.body[i].load_state_dict(self.body[i].state_dict())
        for block in deeper.body[self.blocks : self.blocks + extra_blocks]:
            nn.init.zeros_(block.body[2].weight)
            nn.init.zeros_(block.body[2].bias)
        deeper.body[-1].load_state_dict(self.body[-1].state_dict())
        return deeper.train(self.training)


class UNetSR(nn.Module):
    """Super-resolution with a multi-scale U-Net: for noisy inputs, where context matters.

    The input is upsampled by nearest neighbour (the adjoint of the detector's binning) and
    refined by :class:`UNetDeblur`, whose first pixel-unshuffle brings it back to the input
    resolution: the finest level runs at input resolution, the coarsest ``2 ** (levels -
    1)`` times coarser, so it sees far more context for denoising than a residual stack of
    the same cost. Input sides must be multiples of ``2 ** (levels - 1)``.
    """

    def __init__(self, channels: int = 1, scale: int = 2, base: int = 24, levels: int = 3) -> None:
        super().__init__()
        if scale != 2:
            raise ValueError("scale must be 2")
        self.scale = scale
        self.unet = UNetDeblur(channels, base, levels)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return the image upscaled by ``scale``."""
        return self.unet(F.interpolate(image, scale_factor=float(self.scale), mode="nearest"))


SPECTRUM_FEATURES = 64


class BlurClassifier(nn.Module):
    """Strided-convolution classifier: blur class logits and blur extent in pixels.

    Outputs ``(logits [N, 4], extent [N, 1])``; classes are in-focus, defocus, motion, mixed.
    Global average pooling makes it accept any tile size; it is trained on 128 px tiles.
    With ``average_rotated``, the network in eval mode (and so its ONNX export) averages
    logits and extent over the tile and the tile turned by 180 degrees, which changes
    neither blur class nor extent: a two-member ensemble at twice the cost of the
    convolutions (the spectrum branch runs once: the turn leaves the DCT power as it is,
    since it only flips the signs of odd coefficients). Training sees
    single tiles; turns are part of its augmentation. With ``spectrum_bins``, a small MLP
    also reads the tile's luminance spectrum, :func:`binned_log_power` in that many bands per
    axis, and its features join the pooled ones: how far a blur lowers the power across its
    axis, not only along it, is what separates mixed blur from pure motion.
    """

    def __init__(
        self,
        channels: int = 3,
        width: int = 16,
        classes: int = 4,
        average_rotated: bool = False,
        spectrum_bins: int = 0,
    ) -> None:
        super().__init__()
        widths = [width, width * 2, width * 4, width * 4, width * 8]
        layers: list[nn.Module] = []
        prev = channels
        for w in widths:
            layers += [conv3(prev, w, stride=2), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            layers += [conv3(w, w), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            prev = w
        self.features = nn.Sequential(*layers)
        pooled = prev * 2
        self.spectrum_bins = spectrum_bins
        if spectrum_bins:
            self.spectrum = nn.Sequential(
                nn.Flatten(),
                nn.Linear(spectrum_bins**2, 128),
                nn.ReLU(inplace=True),
                nn.Linear(128, SPECTRUM_FEATURES),
                nn.ReLU(inplace=True),
            )
            pooled += SPECTRUM_FEATURES
        self.logits = nn.Linear(pooled, classes)
        self.extent = nn.Linear(pooled, 1)
        self.average_rotated = average_rotated
        self.min_size_px = max(1, spectrum_bins)  # a frequency band needs a coefficient

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return class logits and the blur extent (pixels, non-negative)."""
        if self.training or not self.average_rotated:
            return self.predict(image)
        pooled = self.pooled(torch.cat([image, image.flip(2, 3)]))
        if self.spectrum_bins:
            # the 180-degree turn only flips the signs of DCT coefficients: same spectrum
            spectrum = self.spectrum_features(image)
            pooled = torch.cat([pooled, torch.cat([spectrum, spectrum])], dim=1)
        logits, extent = self.heads(pooled)
        classes = logits.shape[1]
        return logits.reshape(2, -1, classes).mean(0), extent.reshape(2, -1, 1).mean(0)

    def predict(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and extent of each tile as it is."""
        pooled = self.pooled(image)
        if self.spectrum_bins:
            pooled = torch.cat([pooled, self.spectrum_features(image)], dim=1)
        return self.heads(pooled)

    def pooled(self, image: torch.Tensor) -> torch.Tensor:
        """Mean- and max-pooled convolutional features ``[N, 2 * channels]``."""
        f = self.features(image - 0.5)
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)

    def spectrum_features(self, image: torch.Tensor) -> torch.Tensor:
        """The spectrum branch's features ``[N, SPECTRUM_FEATURES]``."""
        bands = binned_log_power(image, self.spectrum_bins)
        # relative to the tile's mean power, and scaled from about +-8 to about +-2
        bands = (bands - bands.mean(dim=(1, 2), keepdim=True)) / 4.0
        return self.spectrum(bands)

    def heads(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and extent (px) from the joined features."""
        return self.logits(pooled), F.softplus(self.extent(pooled)) * 10.0


class PatchCritic(nn.Module):
    """PatchGAN critic (pix2pix): one real/fake score per overlapping ~34 px patch."""

    def __init__(self, channels: int = 3, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, width * 2, 4, 2, 1),
            nn.InstanceNorm2d(width * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width * 2, width * 4, 4, 1, 1),
            nn.InstanceNorm2d(width * 4),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width * 4, 1, 4, 1, 1),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return a map of patch scores (logits)."""
        return self.net(image)


class CurveEstimator(nn.Module):
    """A PSF parameter and a binary PSF property from blur statistics (MLP).

    For motion: the length and whether the blur runs along x, from two gradient
    autocorrelation curves. For defocus: the radius and whether the PSF is a disk (not a
    Gaussian), from the radial power spectrum. The value is bounded to
    ``[min_value, max_value]``.
    """

    def __init__(
        self,
        features: int = 74,
        width: int = 128,
        max_value: float = 36.0,
        min_value: float = 1.0,
    ) -> None:
        super().__init__()
        self.max_value, self.min_value = max_value, min_value
        self.mlp = nn.Sequential(
            nn.Linear(features, width),
            nn.LeakyReLU(0.1, True),
            nn.Linear(width, width),
            nn.LeakyReLU(0.1, True),
            nn.Linear(width, 2),
        )

    def forward(self, curves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(value [N], property probability [N], property logit [N])``."""
        out = self.mlp(curves.flatten(1))
        value = self.min_value + (self.max_value - self.min_value) * torch.sigmoid(out[:, 0])
        return value, torch.sigmoid(out[:, 1]), out[:, 1]


class WienerUNet(nn.Module):
    """Motion deblurring: estimate the box PSF, Wiener-deconvolve with it, refine with a U-Net.

    A :class:`CurveEstimator` reads a coarse blur length and the axis from the gradient
    autocorrelation, and :meth:`MotionWiener.fit_length` refines the length against the
    tile's spectrum; :class:`MotionWiener` deconvolves with a sharp (weakly regularised,
    noisy) and a smooth balance. The U-Net sees the blurred input, both Wiener
    estimates, the length and the axis, and outputs a correction to the smooth estimate
    (ringing, amplified noise, estimation errors). The estimator learns from
    :meth:`auxiliary_loss` only. Inputs must be at least ``min_size_px`` on each side.
    """

    def __init__(self, channels: int = 3, base: int = 24, levels: int = 3) -> None:
        super().__init__()
        self.deconvolve = MotionWiener()
        self.min_size_px = self.deconvolve.min_size_px
        self.estimator = CurveEstimator(2 * (self.deconvolve.max_length + 1))
        self.refine = UNetDeblur(channels, base, levels, in_channels=3 * channels + 2)

    def estimate(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(length_px, horizontal probability, horizontal logit)`` per image.

        The MLP's length is coarse (about +-1 px); the spectrum along the estimated axis
        refines it to about 0.1 px (:meth:`MotionWiener.fit_length`).
        """
        _, (coarse, horizontal, logit) = self._curves_and_estimate(image)
        with torch.no_grad():
            length = self.deconvolve.fit_length(image, coarse.detach(), horizontal.detach())
        return length, horizontal, logit

    def _curves_and_estimate(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        with torch.no_grad():
            curves = gradient_autocorrelation(image, self.deconvolve.max_length + 1)
        return curves, self.estimator(curves)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return the restored image, same shape as the input."""
        length, horizontal, _ = self.estimate(image)
        return self.restore(image, length.detach(), horizontal.detach())

    def restore(
        self, image: torch.Tensor, length: torch.Tensor, horizontal: torch.Tensor
    ) -> torch.Tensor:
        """Restore with a given PSF: ``length`` px [N] along x where ``horizontal`` [N] is 1."""
        sharp, smooth = self.deconvolve(image, length, horizontal)
        sharp, smooth = sharp.clamp(-0.25, 1.25), smooth.clamp(-0.25, 1.25)
        ones = torch.ones_like(image[:, :1])
        maps = [ones * (length / self.estimator.max_value)[:, None, None, None]]
        maps.append(ones * horizontal[:, None, None, None])
        features = torch.cat([image, sharp, smooth, *maps], dim=1)
        return self.refine.residual(features, smooth)

    def auxiliary_loss(self, image: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
        """Supervise the estimator: L1 on the length (px) and BCE on the axis.

        ``blur`` is ``[N, 2]``: the true length and 1.0 for motion along x.
        """
        _, (length, _, logit) = self._curves_and_estimate(image)  # the MLP's coarse length
        l1 = (length - blur[:, 0]).abs().mean()
        return 0.05 * l1 + 0.1 * F.binary_cross_entropy_with_logits(logit, blur[:, 1])


class KnownMotionPsf(nn.Module):
    """A trained :class:`WienerUNet` that is told the PSF instead of estimating it.

    ``psf`` is ``[N, 2]``: the box length in pixels and 1.0 for motion along x (0.0 along
    y). A scanner that knows its stage speed, exposure and pixel size knows both, and an
    estimate from a tile fails where the tile is not blurred throughout (glass, edges).
    """

    def __init__(self, model: WienerUNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
        """Return the restored image, same shape as the input."""
        return self.model.restore(image, psf[:, 0], psf[:, 1])


class DefocusWienerUNet(nn.Module):
    """Defocus deblurring: estimate the PSF, Wiener-deconvolve with it, refine with a U-Net.

    A :class:`CurveEstimator` reads the radius and the disk probability from the radial
    power spectrum (:meth:`DefocusWiener.radial_profile`). :class:`DefocusWiener`
    deconvolves with that radius, once as a disk and once as a Gaussian, since the two
    are easily confused when the blur is small or the noise high, and a third time ten times
    less regularised (their probability-weighted mix: noisy, but it keeps the frequencies
    near the PSF's zeros that the smooth estimates drop). The U-Net sees the blurred input,
    the three estimates, the radius and the disk probability, and corrects the
    probability-weighted mean of the two smooth estimates. The estimator learns from
    :meth:`auxiliary_loss` only.
    """

    min_size_px = 64
    balances = (1e-2, 3e-3)  # disk, Gaussian: the best true-PSF Wiener on training images
    sharp_balances = (1e-3, 3e-4)

    def __init__(self, channels: int = 3, base: int = 24, levels: int = 3) -> None:
        super().__init__()
        self.deconvolve = DefocusWiener()
        self.estimator = CurveEstimator(self.deconvolve.bins, max_value=12.0, min_value=0.5)
        self.refine = UNetDeblur(channels, base, levels, in_channels=4 * channels + 2)

    def estimate(self, coefficients: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(radius_px, disk probability, disk logit)`` from DCT coefficients.

        The MLP's radius is coarse (it drifts with the tile size); for a disk of at least
        2.5 px it is snapped to the first zero of the spectrum (:func:`refine_notch`).
        """
        with torch.no_grad():
            profile = self.deconvolve.radial_profile(coefficients)
        coarse, disk, logit = self.estimator(profile)
        snapped = refine_notch(profile, coarse.detach(), self.deconvolve.bins)
        use = (disk.detach() > 0.5) & (coarse.detach() >= 2.5)
        return torch.where(use, snapped, coarse), disk, logit

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return the restored image, same shape as the input."""
        wiener = self.deconvolve
        coefficients = wiener.transform(image)
        radius, disk, _ = (t.detach() for t in self.estimate(coefficients))
        rows, cols = image.shape[2], image.shape[3]
        h_disk = wiener.response(wiener.disk(radius), rows, cols)
        h_gauss = wiener.response(wiener.gaussian(radius), rows, cols)
        weight = disk[:, None, None, None]
        gains = [
            wiener.gain(h_disk, self.balances[0]),
            wiener.gain(h_gauss, self.balances[1]),
            weight * wiener.gain(h_disk, self.sharp_balances[0])
            + (1 - weight) * wiener.gain(h_gauss, self.sharp_balances[1]),
        ]
        smooth_disk, smooth_gauss, sharp = (
            wiener.inverse(coefficients * g).clamp(-0.25, 1.25) for g in gains
        )
        ones = torch.ones_like(image[:, :1])
        maps = [ones * (radius / self.estimator.max_value)[:, None, None, None], ones * weight]
        features = torch.cat([image, smooth_disk, smooth_gauss, *maps, sharp], dim=1)
        start = weight * smooth_disk + (1 - weight) * smooth_gauss
        return self.refine.residual(features, start)

    def auxiliary_loss(self, image: torch.Tensor, blur: torch.Tensor) -> torch.Tensor:
        """Supervise the estimator: L1 on the radius (px) and BCE on disk vs Gaussian.

        ``blur`` is :meth:`BlurParams.labels`; columns 2 and 3 are the defocus radius and
        1.0 for a disk.
        """
        with torch.no_grad():
            coefficients = self.deconvolve.transform(image)
            profile = self.deconvolve.radial_profile(coefficients)
        radius, _, logit = self.estimator(profile)  # the MLP's coarse radius
        l1 = (radius - blur[:, 2]).abs().mean()
        return 0.1 * l1 + 0.1 * F.binary_cross_entropy_with_logits(logit, blur[:, 3])


DISK_FIRST_ZERO = 3.8317  # first zero of J1: a disk of radius r has none in H at omega < 3.83 / r


def refine_notch(profile: torch.Tensor, radius: torch.Tensor, bins: int) -> torch.Tensor:
    """The radius of a disk PSF from the first zero of the spectrum near ``radius``.

    ``profile`` is :meth:`DefocusWiener.radial_profile` (element k holds ring k + 1, ring j
    spanning ``[j, j + 1) * pi / bins`` rad/px). The deepest ring within 2 rings of where a
    disk of ``radius`` has its first zero, refined by a parabola, gives
    ``r = 3.83 / omega``.
    """
    curve = profile[:, : bins - 1]
    expected = DISK_FIRST_ZERO * bins / (torch.pi * radius)  # ring coordinate
    centre = (torch.floor(expected) - 1).long().clamp(3, bins - 5)
    window = centre[:, None] + torch.arange(-2, 3, device=centre.device)[None, :]
    k = window.gather(1, curve.gather(1, window).argmin(dim=1, keepdim=True))[:, 0]
    c = curve.gather(1, k[:, None])[:, 0]
    left = curve.gather(1, (k - 1)[:, None])[:, 0]
    right = curve.gather(1, (k + 1)[:, None])[:, 0]
    curvature = (left - 2 * c + right).clamp(min=1e-6)
    shift = (0.5 * (left - right) / curvature).clamp(-0.5, 0.5)
    omega = (k.float() + 1.5 + shift) * torch.pi / bins  # ring centre, rad/px
    return DISK_FIRST_ZERO / omega
