import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from workers.engine import sharpness


@pytest.fixture(scope="module")
def tissue() -> np.ndarray:
    return data.immunohistochemistry()  # real IHC tissue shipped with scikit-image


@pytest.mark.parametrize("sigma", [1.0, 2.0, 4.0])
def test_a_known_blur_lowers_every_measure(tissue, sigma) -> None:
    blurred = ndimage.gaussian_filter(tissue.astype(np.float32), (sigma, sigma, 0))
    soft = sharpness.measure(np.clip(blurred, 0, 255).astype(np.uint8))
    sharp = sharpness.measure(tissue)
    for name in sharpness.MEASURES:
        assert getattr(soft, name) < 0.8 * getattr(sharp, name), name


def test_more_blur_is_less_sharp(tissue) -> None:
    values = [
        sharpness.measure(ndimage.gaussian_filter(tissue, (s, s, 0))).tenengrad
        for s in (0.5, 1.0, 2.0, 4.0)
    ]
    assert values == sorted(values, reverse=True)


def test_measures_do_not_depend_on_contrast(tissue) -> None:
    grey = tissue.astype(np.float32).mean(axis=2) / 255.0
    full = sharpness.measure(grey)
    faint = sharpness.measure(0.5 + 0.3 * (grey - 0.5))
    for name in sharpness.MEASURES:
        assert getattr(faint, name) == pytest.approx(getattr(full, name), rel=1e-3)


def test_high_frequency_share_of_known_spectra() -> None:
    from models.training.metrics import high_frequency_share

    xx = np.mgrid[0:64, 0:64][1]
    low = np.cos(2 * np.pi * 0.0625 * xx)  # 1/16 cycles per pixel: below the cut
    high = np.cos(2 * np.pi * 0.375 * xx)  # 3/8 cycles per pixel: above it
    assert high_frequency_share(low, sharpness.HIGH_FREQUENCY) == pytest.approx(0.0, abs=1e-9)
    assert high_frequency_share(high, sharpness.HIGH_FREQUENCY) == pytest.approx(1.0, abs=1e-9)
    mixed = high_frequency_share(low + high, sharpness.HIGH_FREQUENCY)
    assert mixed == pytest.approx(0.5, abs=1e-6)
    assert sharpness.measure(low + high).hf_share < mixed  # the pre-smoothing damps 3/8
