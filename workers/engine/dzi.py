"""Deep Zoom (DZI) descriptors and tiles, rendered from any slide reader's pyramid."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from workers.engine.readers import SlideReader
from workers.engine.thumbnails import best_level, resize
from workers.errors import NotFound, TooLarge

MAX_READ_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class DeepZoom:
    """The DZI geometry of a (width, height) image."""

    width: int
    height: int
    tile_px: int = 254
    overlap_px: int = 1
    fmt: str = "jpeg"

    @property
    def level_count(self) -> int:
        """Levels from 1 x 1 up to full resolution."""
        return math.ceil(math.log2(max(self.width, self.height, 1))) + 1

    def downsample(self, level: int) -> int:
        """Level-0 pixels per pixel of a DZI level."""
        return int(2 ** (self.level_count - 1 - level))

    def level_size(self, level: int) -> tuple[int, int]:
        """(width, height) of a DZI level."""
        d = self.downsample(level)
        return math.ceil(self.width / d), math.ceil(self.height / d)

    def xml(self) -> str:
        """The ``.dzi`` descriptor."""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="{self.fmt}" Overlap="{self.overlap_px}" TileSize="{self.tile_px}">'
            f'<Size Width="{self.width}" Height="{self.height}"/></Image>\n'
        )

    def tile_box(self, level: int, col: int, row: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of a tile in the pixels of its DZI level, overlap included."""
        if not 0 <= level < self.level_count:
            raise NotFound(f"no DZI level {level}")
        width, height = self.level_size(level)
        x0, y0 = col * self.tile_px, row * self.tile_px
        if col < 0 or row < 0 or x0 >= width or y0 >= height:
            raise NotFound(f"no tile {col}_{row} at DZI level {level}")
        x0, y0 = max(0, x0 - self.overlap_px), max(0, y0 - self.overlap_px)
        x1 = min(width, (col + 1) * self.tile_px + self.overlap_px)
        y1 = min(height, (row + 1) * self.tile_px + self.overlap_px)
        return x0, y0, x1, y1


def render_tile(reader: SlideReader, zoom: DeepZoom, level: int, col: int, row: int) -> np.ndarray:
    """RGB pixels of one DZI tile, read from the reader level closest in detail."""
    x0, y0, x1, y1 = zoom.tile_box(level, col, row)
    d = zoom.downsample(level)
    source_level = best_level(reader, d)
    ds = reader.info.level_downsamples[source_level]
    lw, lh = reader.info.level_dimensions[source_level]
    sx0, sy0 = math.floor(x0 * d / ds), math.floor(y0 * d / ds)
    sx1, sy1 = min(lw, math.ceil(x1 * d / ds)), min(lh, math.ceil(y1 * d / ds))
    if (sx1 - sx0) * (sy1 - sy0) > MAX_READ_PIXELS:
        raise TooLarge("this slide has no pyramid level coarse enough for that DZI level")
    pixels = reader.read_region(
        (round(sx0 * ds), round(sy0 * ds)), source_level, (max(1, sx1 - sx0), max(1, sy1 - sy0))
    )
    return resize(pixels, (x1 - x0, y1 - y0))


def encode(pixels: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """JPEG or PNG bytes of an RGB array."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(
        buffer, format="JPEG" if fmt in ("jpeg", "jpg") else "PNG", quality=quality
    )
    return buffer.getvalue()
