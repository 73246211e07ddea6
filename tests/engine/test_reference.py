import numpy as np
import pytest
from skimage import data

from tests.engine.fakes import ArrayReader
from workers.engine.geometry import Box
from workers.engine.reference import compare, register


@pytest.fixture(scope="module")
def tissue() -> np.ndarray:
    ihc = data.immunohistochemistry()
    return np.pad(ihc, ((0, 512), (0, 512), (0, 0)), "symmetric")[:900, :1000]


def test_register_finds_a_known_shift(tissue) -> None:
    reference = np.roll(tissue, (7, -13), axis=(0, 1))
    area = Box(100, 100, 700, 600)
    dx, dy = register(ArrayReader(tissue), ArrayReader(reference), area)
    assert dx == pytest.approx(-13, abs=0.2) and dy == pytest.approx(7, abs=0.2)


def test_compare_gives_the_known_figures(tissue) -> None:
    area = Box(0, 0, 1000, 900)
    offset = np.clip(tissue.astype(int) + 13, 0, 255).astype(np.uint8)  # +13/255 where not clipped
    reference = ArrayReader(tissue)
    result = compare(ArrayReader(offset), ArrayReader(tissue), reference, area, (0.0, 0.0))
    assert result["output"]["psnr_db"] == float("inf")
    assert result["output"]["ssim"] == pytest.approx(1.0)
    assert result["output"]["pcc"] == pytest.approx(1.0)
    grey = tissue.astype(np.float64).mean(axis=2) / 255
    grey_offset = offset.astype(np.float64).mean(axis=2) / 255
    mse = np.mean((grey_offset - grey) ** 2)
    assert result["input"]["psnr_db"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)
    assert result["input"]["pcc"] == pytest.approx(
        np.corrcoef(grey.ravel(), grey_offset.ravel())[0, 1], abs=1e-6
    )
    assert 0.8 < result["input"]["ssim"] < 1.0


def test_compare_reads_the_reference_at_the_shift(tissue) -> None:
    reference = np.roll(tissue, (5, 9), axis=(0, 1))  # input (x, y) is at reference (x + 9, y + 5)
    area = Box(50, 40, 800, 700)
    output = ArrayReader(tissue[40:740, 50:850])
    result = compare(ArrayReader(tissue), output, ArrayReader(reference), area, (9.0, 5.0))
    assert result["input"]["psnr_db"] == float("inf") and result["shift_px"] == [9.0, 5.0]
