from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage


def synthetic_tissue(size: int, seed: int, channels: int = 3) -> np.ndarray:
    """A textured, stained-looking image: smooth background plus dark 'nuclei'."""
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((size, size)), 6)
    base = (base - base.min()) / (np.ptp(base) + 1e-9)
    nuclei = np.zeros((size, size))
    yy, xx = np.mgrid[:size, :size]
    for _ in range(size // 6):
        cy, cx, r = rng.integers(size), rng.integers(size), rng.uniform(2, 6)
        nuclei[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1.0
    grey = 0.85 - 0.3 * base - 0.45 * ndimage.gaussian_filter(nuclei, 0.7)
    tint = np.array([0.95, 0.7, 0.9])[:channels]
    return np.clip(grey[:, :, None] * tint, 0, 1).astype(np.float32)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sharp")
    for i in range(6):
        u8 = np.round(synthetic_tissue(96, i) * 255).astype(np.uint8)
        Image.fromarray(u8).save(folder / f"tile{i}.png")
    return folder
