"""The deconvolution front end of ``deblur-motion`` and its blur statistic."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.training import baselines, metrics  # noqa: E402
from models.training import degradations as deg  # noqa: E402
from models.training.deconvolution import (  # noqa: E402
    MotionWiener,
    gradient_autocorrelation,
)
from tests.models.conftest import synthetic_tissue  # noqa: E402


def _nchw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None], np.float32))


def _hwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor[0].numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("length", [12.0, 24.0])
@pytest.mark.parametrize("angle", [0.0, 90.0])
def test_gradient_autocorrelation_dips_at_the_blur_length(length: float, angle: float) -> None:
    sharp = synthetic_tissue(256, 7)
    blurred = deg.blur(sharp, deg.motion_psf(length, angle), 1 / 255, np.random.default_rng(0))
    with torch.no_grad():
        curves = gradient_autocorrelation(_nchw(blurred), 37)[0].numpy()
    along, across = (curves[0], curves[1]) if angle == 0.0 else (curves[1], curves[0])
    lag = int(length)
    window = slice(lag - 4, lag + 3)  # lags L-3 .. L+3 (index k holds lag k + 1)
    assert abs(int(np.argmin(along[window])) - 3) <= 1  # a local dip at L along the blur
    assert along[lag - 1] < across[lag - 1] - 0.05  # and not across it


@pytest.mark.parametrize("length", [9.0, 14.0, 9.5])
def test_box_matches_the_degradation_psf(length: float) -> None:
    net = MotionWiener()
    box = net.box(torch.tensor([length]))[0].numpy()
    psf = deg.motion_psf(length, 0.0)
    row = psf[psf.shape[0] // 2]
    pad = (box.size - row.size) // 2
    np.testing.assert_allclose(box[pad : pad + row.size], row, atol=1e-6)
    assert box.sum() == pytest.approx(1.0)


def test_wiener_stage_equals_fft_wiener_with_the_true_psf_inside_the_image() -> None:
    sharp = synthetic_tissue(192, 3)
    psf = deg.motion_psf(11.0, 90.0)
    blurred = deg.blur(sharp, psf, 1 / 255, np.random.default_rng(1)).astype(np.float32)
    with torch.no_grad():
        (smooth,) = MotionWiener()(
            _nchw(blurred), torch.tensor([11.0]), torch.tensor([0.0]), balances=(1e-2,)
        )
    reference = baselines.wiener(blurred, psf, 1e-2)
    inner = (slice(40, -40), slice(40, -40))
    np.testing.assert_allclose(_hwc(smooth)[inner], reference[inner], atol=0.02)
    before = metrics.psnr(blurred[inner], sharp[inner])
    assert metrics.psnr(_hwc(smooth)[inner], sharp[inner]) > before + 2


@pytest.mark.parametrize("length", [4.0, 9.5, 15.0, 27.0])
@pytest.mark.parametrize(("angle", "shape"), [(0.0, (256, 256)), (90.0, (224, 288))])
def test_spectrum_fit_recovers_the_box_length(
    length: float, angle: float, shape: tuple[int, int]
) -> None:
    sharp = synthetic_tissue(288, 5)[: shape[0], : shape[1]]
    psf = deg.motion_psf(length, angle)
    blurred = deg.blur(sharp, psf, 1 / 255, np.random.default_rng(2))
    horizontal = torch.tensor([1.0 if angle == 0.0 else 0.0])
    with torch.no_grad():  # the learned estimate is only a coarse guess: here 20 % too long
        fitted = MotionWiener().fit_length(_nchw(blurred), torch.tensor([1.2 * length]), horizontal)
    assert fitted.item() == pytest.approx(length, abs=0.3)


def test_spectrum_fit_stays_within_reach_of_the_coarse_estimate() -> None:
    sharp = synthetic_tissue(256, 5)
    blurred = deg.blur(sharp, deg.motion_psf(8.0, 0.0), 1 / 255, np.random.default_rng(2))
    coarse = torch.tensor([8.0, 20.0])  # 20 px: twice the true length, so 8 px is out of reach
    with torch.no_grad():
        fitted = MotionWiener().fit_length(_nchw(blurred).repeat(2, 1, 1, 1), coarse, torch.ones(2))
    assert fitted[0].item() == pytest.approx(8.0, abs=0.3)
    assert 14.0 - 1e-4 <= fitted[1].item() <= 26.0 + 1e-4
