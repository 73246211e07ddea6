import numpy as np
import pytest

from models.training import baselines, metrics
from models.training import degradations as deg
from tests.models.conftest import synthetic_tissue


def test_metrics_on_identical_and_degraded_images() -> None:
    image = synthetic_tissue(64, 3)
    assert metrics.psnr(image, image) == float("inf")
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    assert metrics.pcc(image, image) == pytest.approx(1.0)
    noisy = deg.add_gaussian_noise(image, 0.05, np.random.default_rng(0))
    assert metrics.psnr(noisy, image) == pytest.approx(26.0, abs=0.3)  # 20 log10(1 / 0.05)
    assert metrics.ssim(noisy, image) < 0.95


def test_baselines_are_deterministic_and_deconvolution_helps() -> None:
    image = synthetic_tissue(96, 4)
    psf = deg.motion_psf(9, 0.0)
    blurred = deg.blur(image, psf, 1 / 255, np.random.default_rng(1))
    a = baselines.unsharp_mask(blurred, 2.0, 1.0)
    np.testing.assert_array_equal(a, baselines.unsharp_mask(blurred, 2.0, 1.0))
    before = metrics.psnr(blurred, image)
    assert metrics.psnr(baselines.wiener(blurred, psf, 1e-2), image) > before + 1
    assert metrics.psnr(baselines.richardson_lucy(blurred, psf, 20), image) > before + 1


def test_cubic_upsampling_respects_the_sampling_geometry() -> None:
    image = synthetic_tissue(64, 5)
    low = deg.decimate(deg.convolve(image, deg.gaussian_psf(1.0)), 2)
    aligned = baselines.cubic_upsample(low, 2, offset=0.0)
    shifted = baselines.cubic_upsample(low, 2, offset=0.5)
    assert aligned.shape == image.shape
    assert metrics.psnr(aligned, image) > metrics.psnr(shifted, image)
