"""Sharp training images: discovery, loading, the held-out split by source, random crops."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".bmp"}
_SLIDE_SUFFIXES = {".svs", ".ndpi", ".scn"}
_REPLICATE = re.compile(r"_\d+$")


def discover_images(paths: Iterable[Path]) -> list[Path]:
    """All image files under the given files or folders (recursive), sorted."""
    found: set[Path] = set()
    for path in paths:
        path = Path(path)
        if path.is_file():
            found.add(path)
        elif path.is_dir():
            found.update(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            raise FileNotFoundError(path)
    return sorted(found)


def _to_unit(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    lo, hi = np.percentile(array, 0.01), np.percentile(array, 99.99)
    return np.clip((array - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def load_image(path: Path, channels: int = 3) -> np.ndarray:
    """Read an image as float32 ``(H, W, channels)`` in [0, 1].

    Slides (.svs etc.) and TIFFs are read with tifffile (level 0 of the first series);
    alpha is dropped; RGB becomes luminance when ``channels == 1`` and grey is repeated when
    ``channels == 3``. 16-bit data are scaled by their 0.01-99.99 percentiles.
    """
    suffix = path.suffix.lower()
    if suffix in {".tif", ".tiff"} | _SLIDE_SUFFIXES:
        array = tifffile.imread(path, series=0, level=0)
    else:
        with Image.open(path) as handle:
            array = np.asarray(handle)
    if array.ndim == 3 and array.shape[0] < 5 and array.shape[-1] > 5:
        array = np.moveaxis(array, 0, -1)
    image = _to_unit(array)
    if image.ndim == 2:
        image = image[:, :, None]
    image = image[:, :, :3]
    if channels == 1 and image.shape[2] == 3:
        image = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        image = image[:, :, None]
    elif channels == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image, dtype=np.float32)


def source_group(path: Path) -> str:
    """Name of the source a file comes from: replicate tiles ``X_2``, ``X_3`` share ``X``."""
    return f"{path.parent.name}/{_REPLICATE.sub('', path.stem)}"


def is_held_out(path: Path, fraction: float = 0.2) -> bool:
    """Deterministic held-out membership by hashing the file's source group."""
    digest = hashlib.sha256(source_group(path).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_paths(paths: Sequence[Path], fraction: float = 0.2) -> tuple[list[Path], list[Path]]:
    """Split files into (train, held_out) by source group (whole files, never crops)."""
    held = [p for p in paths if is_held_out(p, fraction)]
    return [p for p in paths if not is_held_out(p, fraction)], held


def tissue_fraction(image: np.ndarray, block: int = 32, min_std: float = 0.04) -> float:
    """Share of ``block``-px blocks with texture (std >= ``min_std``), a no-tissue detector."""
    h, w = image.shape[0] // block * block, image.shape[1] // block * block
    if h == 0 or w == 0:
        return 0.0
    grey = image[:h, :w].mean(axis=2)
    blocks = grey.reshape(h // block, block, w // block, block).std(axis=(1, 3))
    return float((blocks >= min_std).mean())


MIN_CROP_STD = 0.03  # emptier crops are background: re-drawn in training, skipped in evaluation


@dataclass
class ImagePool:
    """Sharp images held in memory, with their file names."""

    images: list[np.ndarray]
    paths: list[Path]

    @classmethod
    def load(
        cls,
        paths: Sequence[Path],
        channels: int,
        min_side: int,
        min_tissue: float = 0.25,
    ) -> ImagePool:
        """Load images, skipping small ones and near-empty (no-tissue) ones."""
        images, kept = [], []
        for path in paths:
            image = load_image(path, channels)
            if min(image.shape[:2]) < min_side or tissue_fraction(image) < min_tissue:
                continue
            images.append(image)
            kept.append(path)
        if not images:
            raise ValueError("no usable images (too small or no tissue)")
        return cls(images, kept)

    def every_nth(self, count: int) -> ImagePool:
        """About ``count`` images spread evenly over the pool (every n-th, at most ``count``)."""
        step = max(1, len(self.images) // count)
        return ImagePool(self.images[::step][:count], self.paths[::step][:count])

    def random_crop(
        self, size: int, rng: np.random.Generator, min_std: float = MIN_CROP_STD, tries: int = 10
    ) -> np.ndarray:
        """A random ``size``-px crop, preferring crops with texture (std >= ``min_std``)."""
        crop = None
        for _ in range(tries):
            image = self.images[rng.integers(len(self.images))]
            y = rng.integers(image.shape[0] - size + 1)
            x = rng.integers(image.shape[1] - size + 1)
            crop = image[y : y + size, x : x + size]
            if crop.std() >= min_std:
                break
        assert crop is not None
        return crop


def augment(image: np.ndarray, rng: np.random.Generator, transpose: bool) -> np.ndarray:
    """Random flips (and, if ``transpose``, 90-degree rotations) of a sharp crop.

    Flips keep the scan axis where it is; a transpose swaps x and y, so motion training
    (whose blur axis is tied to the scan axis) passes ``transpose=False``.
    """
    if rng.random() < 0.5:
        image = image[::-1]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if transpose and rng.random() < 0.5:
        image = image.transpose(1, 0, 2)
    return np.ascontiguousarray(image)
