"""A slide seen through the blur forward model: what an evaluation job restores.

Level 0 is convolved with a known PSF (mirror-extended at the slide's edges, read with a
margin so every region sees the same pixels), Gaussian noise is added from a fixed field
(one seeded block per 256 px cell, so overlapping reads agree) and the result is rounded to
8 bits like a scan. Lower levels, used only for thumbnails, are passed through.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.training import degradations as deg
from workers.engine.geometry import Box
from workers.engine.pipeline import read_padded
from workers.engine.readers import SlideInfo, SlideReader

NOISE_CELL_PX = 256


def forward_psf(spec: dict[str, Any]) -> np.ndarray:
    """The PSF of an evaluation spec: ``defocus``, ``motion`` or ``mixed`` (motion then defocus)."""
    kind = spec["degradation"]
    motion = deg.motion_psf(float(spec["length_px"]), float(spec["angle_deg"]))
    defocus = deg.defocus_psf(float(spec["radius_px"]), str(spec["kind"]))
    if kind == "defocus":
        return defocus
    if kind == "motion":
        return motion
    return deg.combine_psfs(motion, defocus)


class DegradedReader:
    """``reader`` blurred by ``psf`` with noise of ``noise_std`` (of the [0, 1] range)."""

    def __init__(self, reader: SlideReader, psf: np.ndarray, noise_std: float, seed: int) -> None:
        self.reader, self.psf, self.noise_std, self.seed = reader, psf, noise_std, seed
        self.margin = max(psf.shape) // 2 + 1

    @property
    def info(self) -> SlideInfo:
        """The underlying slide's description."""
        return self.reader.info

    def read_region(self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Degraded level-0 pixels; other levels as they are."""
        if level != 0:
            return self.reader.read_region(l0_xy, level, size)
        box = Box(l0_xy[0], l0_xy[1], size[0], size[1])
        wide = box.expand(self.margin)
        pixels = read_padded(self.reader, wide).astype(np.float32) / 255.0
        blurred = deg.convolve(pixels, self.psf)
        m = self.margin
        blurred = blurred[m : m + box.height, m : m + box.width] + self._noise(box)
        scan: np.ndarray = np.clip(np.rint(blurred * 255.0), 0, 255).astype(np.uint8)
        return scan

    def _noise(self, box: Box) -> np.ndarray:
        """The fixed noise field over a box (rows, cols, 3)."""
        noise = np.zeros((box.height, box.width, 3), dtype=np.float32)
        if self.noise_std <= 0:
            return noise
        cell = NOISE_CELL_PX
        for y in range(box.y // cell * cell, box.bottom, cell):
            for x in range(box.x // cell * cell, box.right, cell):
                rng = np.random.default_rng((self.seed, x // cell, y // cell))
                field = rng.normal(0.0, self.noise_std, (cell, cell, 3)).astype(np.float32)
                inside = Box(x, y, cell, cell).intersect(box)
                if inside is not None:
                    noise[inside.relative_to(box).slices()] = field[
                        inside.relative_to(Box(x, y, cell, cell)).slices()
                    ]
        return noise

    def close(self) -> None:
        """Close the underlying slide."""
        self.reader.close()
