"""Training losses: L1, SSIM, frequency (FFT magnitude) and adversarial terms."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _gaussian_window(channels: int, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM (Gaussian window 11 px, sigma 1.5, valid region) over a batch."""
    c = x.shape[1]
    w = _gaussian_window(c).to(x)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mx**2
    syy = F.conv2d(y * y, w, groups=c) - my**2
    sxy = F.conv2d(x * y, w, groups=c) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx**2 + my**2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


def frequency_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 distance between the magnitudes of the 2-D spectra (sharpens fine detail)."""
    fx = torch.fft.rfft2(x, norm="ortho").abs()
    fy = torch.fft.rfft2(y, norm="ortho").abs()
    return (fx - fy).abs().mean()


SSIM_WEIGHT = 0.2
FREQUENCY_WEIGHT = 0.02


def restoration_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    ssim_weight: float = SSIM_WEIGHT,
    frequency_weight: float = FREQUENCY_WEIGHT,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 + ``ssim_weight`` (1 - SSIM) + ``frequency_weight`` frequency L1."""
    l1 = (output - target).abs().mean()
    s = ssim(output, target)
    freq = frequency_l1(output, target)
    total = l1 + ssim_weight * (1 - s) + frequency_weight * freq
    return total, {"l1": l1.item(), "ssim": s.item(), "freq": freq.item()}


def generator_adversarial(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss for the generator."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def critic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy loss for the PatchGAN critic."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def classifier_loss(
    logits: torch.Tensor,
    extent: torch.Tensor,
    label: torch.Tensor,
    target_extent: torch.Tensor,
    extent_weight: float = 0.05,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on the class plus a smooth-L1 term on the blur extent (pixels)."""
    ce = F.cross_entropy(logits, label)
    ext = F.smooth_l1_loss(extent, target_extent, beta=2.0)
    accuracy = (logits.argmax(dim=1) == label).float().mean()
    return ce + extent_weight * ext, {"ce": ce.item(), "extent": ext.item(), "acc": accuracy.item()}
