"""Bidirectional line-shift estimation and correction on simulated video-rate frames."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage import color, data, exposure
from skimage.registration import phase_cross_correlation

from models.training.degradations import add_shot_noise, average_pool, shift_odd_lines
from workers.engine.linescan import correct_line_shift, estimate_line_shift, odd_even_halves

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CELLPROFILER = SHARED_DATA / "fluo_tiles" / "cellprofiler_examplehuman"
PEAK_PHOTONS = 60.0


def hematoxylin_image() -> np.ndarray:
    """Real tissue as a DNA stain would show it: hematoxylin density, nuclei bright, [0, 1]."""
    density = color.rgb2hed(data.immunohistochemistry())[..., 0]
    return exposure.rescale_intensity(density, out_range=(0.0, 1.0)).astype(np.float32)


def scan(image: np.ndarray, shift_px: float, seed: int = 0) -> np.ndarray:
    """A video-rate bidirectional frame: 2x binning, odd rows shifted, Poisson noise."""
    rng = np.random.default_rng(seed)
    return add_shot_noise(shift_odd_lines(average_pool(image, 2), shift_px), PEAK_PHOTONS, 0, rng)


def mismatch(frame: np.ndarray) -> float:
    """Mean absolute difference between the odd rows and the even rows around them."""
    even, odd = odd_even_halves(frame)
    return float(np.abs(odd - even).mean())


@pytest.fixture(scope="module")
def tissue() -> np.ndarray:
    return hematoxylin_image()


@pytest.mark.parametrize("shift_px", [1.5, -2.25, 0.4, 5.0])
def test_shift_is_estimated_within_a_quarter_pixel_and_corrected(
    tissue: np.ndarray, shift_px: float
) -> None:
    frame = scan(tissue, shift_px)
    estimate = estimate_line_shift(frame)
    corrected = correct_line_shift(frame, estimate)
    print(f"shift {shift_px:+.2f} px: estimated {estimate:+.3f} px")
    assert estimate == pytest.approx(shift_px, abs=0.25)
    assert mismatch(corrected) < mismatch(frame)
    assert mismatch(corrected) <= mismatch(scan(tissue, 0.0, seed=1)) * 1.05  # as if unshifted


def test_no_shift_is_estimated_as_none(tissue: np.ndarray) -> None:
    assert estimate_line_shift(scan(tissue, 0.0)) == pytest.approx(0.0, abs=0.1)


def test_estimate_agrees_with_skimage_cross_correlation(tissue: np.ndarray) -> None:
    frame = scan(tissue, -2.25, seed=3)
    even, odd = odd_even_halves(frame)
    window = np.hanning(even.shape[1])
    reference, moving = (odd - odd.mean()) * window, (even - even.mean()) * window
    shift, _, _ = phase_cross_correlation(
        reference, moving, upsample_factor=100, normalization=None
    )  # the shift that moves the even rows onto the odd rows
    assert estimate_line_shift(frame) == pytest.approx(shift[1], abs=0.05)


def test_search_stays_within_the_bound_and_a_blank_frame_has_no_shift(tissue: np.ndarray) -> None:
    assert abs(estimate_line_shift(scan(tissue, 6.0), max_shift_px=2.5)) <= 2.5
    assert estimate_line_shift(np.zeros((64, 64), np.uint8)) == 0.0


def test_channels_and_integer_frames_are_accepted(tissue: np.ndarray) -> None:
    frame = np.clip(np.rint(scan(tissue, 1.5) * 255), 0, 255).astype(np.uint8)
    rgb = np.repeat(frame[..., None], 3, axis=2)
    assert estimate_line_shift(rgb) == pytest.approx(estimate_line_shift(frame))
    corrected = correct_line_shift(rgb, 1.5)
    assert corrected.dtype == np.float32 and corrected.shape == rgb.shape
    assert np.array_equal(corrected[0::2], rgb[0::2].astype(np.float32))


def test_correction_undoes_the_shift_of_a_clean_image(tissue: np.ndarray) -> None:
    clean = average_pool(tissue, 2)
    restored = correct_line_shift(shift_odd_lines(clean, 2.0), 2.0)  # whole pixels: exact
    assert np.allclose(restored[:, 2:-2], clean[:, 2:-2])


@pytest.mark.skipif(not CELLPROFILER.is_dir(), reason="../shared/data/fluo_tiles is absent")
@pytest.mark.parametrize("shift_px", [1.5, -2.25])
def test_shift_on_real_widefield_fluorescence(shift_px: float) -> None:
    paths = sorted(CELLPROFILER.glob("*d0.tif"))
    assert paths, "no *d0.tif (DNA) images"
    for index, path in enumerate(paths):
        image = tifffile.imread(path).astype(np.float32)
        image = (image - image.min()) / max(float(np.ptp(image)), 1e-6)
        frame = scan(image, shift_px, seed=index)
        estimate = estimate_line_shift(frame)
        print(f"{path.name}: shift {shift_px:+.2f} px, estimated {estimate:+.3f} px")
        assert estimate == pytest.approx(shift_px, abs=0.25)
        assert mismatch(correct_line_shift(frame, estimate)) < mismatch(frame)
