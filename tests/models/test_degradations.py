import numpy as np
import pytest

from models.training import degradations as deg
from tests.models.conftest import synthetic_tissue


@pytest.mark.parametrize("length", [3, 5, 15, 15.5, 29])
@pytest.mark.parametrize("angle", [0.0, 90.0, 30.0])
def test_motion_psf_is_normalised_and_has_the_asked_length(length: float, angle: float) -> None:
    psf = deg.motion_psf(length, angle)
    assert psf.sum() == pytest.approx(1.0)
    assert (psf >= 0).all()
    assert psf.shape[0] % 2 == 1 and psf.shape[1] % 2 == 1
    # second moment of a box of L pixels: (L^2 - 1) / 12 for whole taps; oblique lines are
    # rasterised on a staircase, which adds a little width across the line
    tolerance = 0.08 if angle in (0.0, 90.0) else 0.15
    assert deg.psf_extent_px(psf) == pytest.approx(length, rel=tolerance)


def test_horizontal_box_has_exactly_l_taps() -> None:
    psf = deg.motion_psf(15, 0.0)
    assert psf.shape == (1, 15)
    np.testing.assert_allclose(psf, 1 / 15)
    np.testing.assert_allclose(deg.motion_psf(15, 90.0), psf.T, atol=1e-12)


def test_blurring_a_point_smears_it_over_the_blur_length() -> None:
    image = np.zeros((41, 41))
    image[20, 20] = 1.0
    out = deg.convolve(image, deg.motion_psf(15, 0.0))
    cols = np.flatnonzero(out[20] > 1e-6)
    assert cols.size == 15 and cols[0] == 13 and cols[-1] == 27
    assert out.sum() == pytest.approx(1.0, abs=1e-5)


def test_motion_length_from_stage_speed() -> None:
    # paper 000: 5000 um/s, 2 ms exposure -> 10 um smear; at 0.5 um/px that is 20 px
    assert deg.motion_length_px(5000.0, 0.002, 0.5) == pytest.approx(20.0)


@pytest.mark.parametrize("radius", [1.5, 4.0, 7.0])
def test_defocus_psfs_are_normalised_and_grow_with_radius(radius: float) -> None:
    disk = deg.defocus_psf(radius, "disk")
    gauss = deg.defocus_psf(radius, "gaussian")
    for psf in (disk, gauss):
        assert psf.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(psf, psf[::-1, ::-1], atol=1e-12)
    # disk of radius r: per-axis variance r^2/4 -> extent sqrt(12 * r^2 / 2) = 2.449 r
    assert deg.psf_extent_px(disk) == pytest.approx(2.449 * radius, rel=0.06)
    assert deg.psf_extent_px(gauss) == pytest.approx(2.449 * radius, rel=0.06)
    assert deg.psf_extent_px(deg.disk_psf(radius + 1)) > deg.psf_extent_px(disk)


def test_defocus_radius_grows_with_defocus_distance() -> None:
    r1 = deg.defocus_radius_px(2.0, 0.75, 0.5)
    r2 = deg.defocus_radius_px(4.0, 0.75, 0.5)
    assert r2 == pytest.approx(2 * r1)
    assert r1 == pytest.approx(2.0 * np.tan(np.arcsin(0.75)) / 0.5)


def test_convolution_keeps_a_flat_image_flat() -> None:
    flat = np.full((32, 40, 3), 0.4, dtype=np.float32)
    psf = deg.combine_psfs(deg.motion_psf(9, 0), deg.disk_psf(3))
    np.testing.assert_allclose(deg.convolve(flat, psf), 0.4, atol=1e-5)


def test_gaussian_noise_has_the_asked_std() -> None:
    rng = np.random.default_rng(0)
    image = np.full((256, 256), 0.5, dtype=np.float32)
    noisy = deg.add_gaussian_noise(image, 2 / 255, rng)
    assert (noisy - image).std() == pytest.approx(2 / 255, rel=0.02)
    assert (noisy - image).mean() == pytest.approx(0.0, abs=2e-4)


@pytest.mark.parametrize("peak", [20.0, 60.0])
def test_shot_noise_is_poisson_at_the_asked_peak(peak: float) -> None:
    rng = np.random.default_rng(1)
    image = np.full((300, 300), 0.5)
    noisy = deg.add_shot_noise(image, peak, 0.0, rng)
    assert noisy.mean() == pytest.approx(0.5, rel=0.01)
    # Poisson: variance of counts equals their mean (0.5 * peak)
    assert (noisy * peak).var() == pytest.approx(0.5 * peak, rel=0.03)
    dark = deg.add_shot_noise(image, peak, 3.0, rng)
    assert (dark * peak).var() == pytest.approx(0.5 * peak + 9.0, rel=0.03)


def test_low_resolution_model_shape_and_noise() -> None:
    rng = np.random.default_rng(2)
    image = synthetic_tissue(64, 0)
    low = deg.low_resolution(image, 4, 1.5, 0.0, rng)
    assert low.shape == (16, 16, 3)
    noisy = deg.low_resolution(image, 4, 1.5, 2 / 255, np.random.default_rng(2))
    assert (noisy - low).std() == pytest.approx(2 / 255, rel=0.1)


def test_average_pool_and_decimate() -> None:
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(deg.average_pool(image, 2), [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_allclose(deg.decimate(image, 2), [[0, 2], [8, 10]])


def test_odd_line_shift_moves_only_odd_rows() -> None:
    image = np.tile(np.arange(10, dtype=np.float32), (4, 1))
    out = deg.shift_odd_lines(image, 1.0)
    np.testing.assert_allclose(out[0::2], image[0::2])
    np.testing.assert_allclose(out[1, 1:], image[1, :-1])


def test_sinusoidal_stretch_is_invertible_and_stretches_the_line_ends() -> None:
    x = np.linspace(0, 1, 128)
    image = np.tile(np.sin(6 * x) * 0.4 + 0.5, (8, 1)).astype(np.float32)
    warped = deg.sinusoidal_stretch(image, 0.8)
    assert np.abs(warped - image).max() > 0.01
    restored = deg.undo_sinusoidal_stretch(warped, 0.8)
    np.testing.assert_allclose(restored[:, 4:-4], image[:, 4:-4], atol=0.01)
    positions = deg._sine_positions(128, 0.8)
    steps = np.diff(positions)
    assert steps[0] < steps[64]  # samples closer together near the ends: features stretched


def test_video_rate_scan_halves_the_size() -> None:
    image = synthetic_tissue(64, 1, channels=1)
    frame = deg.video_rate_scan(image, 60.0, 1.0, 1.0, 0.5, np.random.default_rng(0))
    assert frame.shape == (32, 32, 1)


def test_jpeg_roundtrip_is_close() -> None:
    image = synthetic_tissue(64, 2)
    out = deg.jpeg_roundtrip(image, 90)
    assert out.shape == image.shape
    assert np.abs(out - image).mean() < 0.02
