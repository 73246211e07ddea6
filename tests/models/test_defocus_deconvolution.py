"""The deconvolution front end of ``deblur-defocus`` and the spectrum its estimator reads."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.training import baselines, metrics  # noqa: E402
from models.training import degradations as deg  # noqa: E402
from models.training.deconvolution import (  # noqa: E402
    DefocusWiener,
    binned_log_power,
    dct_matrix,
    folded_dct,
    folded_idct,
    frequency_order,
)
from tests.models.conftest import synthetic_tissue  # noqa: E402


def _nchw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None], np.float32))


def _hwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor[0].numpy().transpose(1, 2, 0)


def test_dct_matrix_is_orthonormal() -> None:
    d = dct_matrix(37, torch.zeros(1))
    torch.testing.assert_close(d @ d.T, torch.eye(37), atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [40, 37])  # folded (even) and dense (odd)
@pytest.mark.parametrize("dim", [-1, -2])
def test_folded_dct_is_the_dct_in_frequency_order_and_inverts(size: int, dim: int) -> None:
    from scipy.fft import dct

    shape = (2, 3, size, size - 4) if dim == -2 else (2, 3, size + 6, size)
    x = torch.rand(*shape, dtype=torch.float64)
    order = frequency_order(size, x).long().numpy()
    assert sorted(order) == list(range(size))
    expected = np.take(dct(x.numpy(), norm="ortho", axis=dim), order, axis=dim)
    coefficients = folded_dct(x, dim)
    np.testing.assert_allclose(coefficients.numpy(), expected, atol=1e-12)
    torch.testing.assert_close(folded_idct(coefficients, dim), x, atol=1e-12, rtol=0)


def test_binned_log_power_averages_the_dct_log_power_into_bands() -> None:
    from scipy.fft import dctn

    image = np.random.default_rng(0).random((1, 3, 24, 40)).astype(np.float32)
    power = np.log(dctn(image[0].mean(axis=0), norm="ortho") ** 2 + 1e-7)
    expected = power.reshape(4, 6, 4, 10).mean(axis=(1, 3))
    bands = binned_log_power(torch.from_numpy(image), bins=4)[0].numpy()
    np.testing.assert_allclose(bands, expected, atol=1e-3)


def test_motion_blur_lowers_the_power_along_its_axis_and_defocus_along_both() -> None:
    tissue = synthetic_tissue(128, seed=3)
    sharp = binned_log_power(_nchw(tissue), bins=8)[0].numpy()
    for psf, across in ((deg.motion_psf(15, 0.0), False), (deg.disk_psf(4.0), True)):
        drop = sharp - binned_log_power(_nchw(deg.convolve(tissue, psf)), bins=8)[0].numpy()
        assert drop[0, 4:].mean() > 3.0  # high horizontal frequencies
        # high vertical frequencies (lowest horizontal band): a box along x barely
        # touches them (measured 1.0-1.1 against 4.3-6.2 for the disk)
        assert (drop[4:, 0].mean() > 3.0) == across
        assert drop[4:, 0].mean() > 0.5


def test_inverse_undoes_the_transform_on_a_non_square_image() -> None:
    image = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    roundtrip = DefocusWiener.inverse(DefocusWiener.transform(image))
    # two float32 matrix products each way: up to 1.24e-5 over 200 random images
    torch.testing.assert_close(roundtrip, image, atol=5e-5, rtol=0)


@pytest.mark.parametrize("kind", ["disk", "gaussian"])
def test_psfs_match_the_degradation_library(kind: str) -> None:
    net = DefocusWiener()
    radius = torch.tensor([4.0])
    psf = (net.disk(radius) if kind == "disk" else net.gaussian(radius))[0].numpy()
    reference = deg.defocus_psf(4.0, kind)
    pad = (psf.shape[0] - reference.shape[0]) // 2
    inner = psf[pad : pad + reference.shape[0], pad : pad + reference.shape[0]]
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(inner, reference, atol=3e-3)
    assert inner.sum() == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("kind", ["disk", "gaussian"])
def test_dct_wiener_equals_fft_wiener_with_the_true_psf(kind: str) -> None:
    sharp = synthetic_tissue(160, 3)
    psf = deg.defocus_psf(4.0, kind)
    blurred = deg.blur(sharp, psf, 1 / 255, np.random.default_rng(1)).astype(np.float32)
    net = DefocusWiener()
    radius = torch.tensor([4.0])
    model_psf = net.disk(radius) if kind == "disk" else net.gaussian(radius)
    with torch.no_grad():
        out = _hwc(net.deconvolve(net.transform(_nchw(blurred)), model_psf, 1e-2))
    reference = baselines.wiener(blurred, psf, 1e-2)
    inner = (slice(24, -24), slice(24, -24))
    np.testing.assert_allclose(out[inner], reference[inner], atol=0.01)
    assert metrics.psnr(out[inner], sharp[inner]) > metrics.psnr(blurred[inner], sharp[inner]) + 2


def test_radial_profile_shows_the_first_zero_of_a_disk_and_not_of_a_gaussian() -> None:
    sharp = synthetic_tissue(256, 5)
    net = DefocusWiener()
    profiles = {}
    for kind in ("disk", "gaussian"):
        blurred = deg.blur(sharp, deg.defocus_psf(4.0, kind), 0.5 / 255, np.random.default_rng(2))
        with torch.no_grad():
            profiles[kind] = net.radial_profile(net.transform(_nchw(blurred)))[0].numpy()
    assert profiles["disk"].shape == (net.bins,)  # bins 1 .. bins-1 and the mean level
    first_zero = 3.8317 / 4.0 / np.pi * net.bins  # ring index of the disk's first zero
    ring = round(first_zero) - 1  # element k holds ring k + 1
    disk, gauss = profiles["disk"][:-1], profiles["gaussian"][:-1]
    window = slice(ring - 2, ring + 3)
    # a local minimum of the disk's spectrum near its first zero, deeper than the Gaussian's
    assert disk[window].min() < disk[ring - 5] and disk[window].min() < disk[ring + 5]
    assert disk[window].min() < gauss[window].min() - 0.3
    assert np.all(np.diff(gauss[ring - 6 : ring + 6]) < 0.1)  # the Gaussian falls smoothly


@pytest.mark.parametrize("radius", [3.0, 4.0, 5.0])
def test_a_coarse_disk_radius_is_snapped_to_the_first_zero_of_the_spectrum(radius: float) -> None:
    from models.training.networks import refine_notch

    sharp = synthetic_tissue(256, 11)
    blurred = deg.blur(sharp, deg.disk_psf(radius), 1 / 255, np.random.default_rng(3))
    net = DefocusWiener()
    with torch.no_grad():
        profile = net.radial_profile(net.transform(_nchw(blurred)))
    coarse = torch.tensor([radius * 0.92, radius * 1.08])  # the MLP's typical error
    snapped = refine_notch(profile.expand(2, -1), coarse, net.bins)
    torch.testing.assert_close(snapped, torch.full((2,), radius), atol=0.12, rtol=0)
