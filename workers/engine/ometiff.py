"""A finished OME-Zarr as a pyramidal OME-TIFF that QuPath, Bio-Formats, OpenSlide and ASAP open.

Written with tifffile, tile by tile from the OME-Zarr's levels, one band of tiles in memory
at a time (never a whole level). The pyramid is stored twice over for two families of
readers: as SubIFDs of the full-resolution image, which the OME-TIFF specification and
Bio-Formats (QuPath) and tifffile read, and as reduced-resolution images in the main chain
of IFDs, which OpenSlide's generic tiled TIFF reader (ASAP, QuPath's OpenSlide backend)
reads. The levels past the first add about a third to the file. The OME-XML describes the
one image with its physical pixel size; the TIFF resolution tags carry it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from workers.engine.omezarr import OmeZarrReader

TILE_PX = 512
JPEG_QUALITY = 90


def write_ome_tiff(source: Path, target: Path, name: str = "restored") -> int:
    """Write the OME-Zarr at ``source`` to ``target``; returns the number of levels."""
    reader = OmeZarrReader(source)
    info = reader.info
    levels = len(info.level_dimensions)
    ome = tifffile.OmeXml()
    physical = {}
    if info.mpp_x and info.mpp_y:
        physical = {"PhysicalSizeX": info.mpp_x, "PhysicalSizeY": info.mpp_y}
    ome.addimage(
        dtype="uint8",
        shape=(info.height, info.width, 3),
        storedshape=(1, 1, 1, info.height, info.width, 3),
        axes="YXS",
        Name=name,
        **physical,
    )
    options: dict[str, Any] = {
        "tile": (TILE_PX, TILE_PX),
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": JPEG_QUALITY},
        "metadata": None,
        "dtype": "uint8",
    }
    with tifffile.TiffWriter(target, bigtiff=True) as tif:
        tif.write(
            _tiles(reader, 0),
            shape=_shape(reader, 0),
            description=ome.tostring(),
            subifds=levels - 1,
            **_resolution(info.mpp_x, 0),
            **options,
        )
        for _ in range(2):  # first into the SubIFDs, then into the main chain
            for level in range(1, levels):
                tif.write(
                    _tiles(reader, level),
                    shape=_shape(reader, level),
                    subfiletype=1,
                    **_resolution(info.mpp_x, level),
                    **options,
                )
    return levels


def _shape(reader: OmeZarrReader, level: int) -> tuple[int, int, int]:
    width, height = reader.info.level_dimensions[level]
    return height, width, 3


def _resolution(mpp: float | None, level: int) -> dict[str, Any]:
    """TIFF resolution tags: pixels per centimetre at this level."""
    if not mpp:
        return {}
    per_cm = 10_000.0 / (mpp * 2**level)
    return {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}


def _tiles(reader: OmeZarrReader, level: int) -> Iterator[np.ndarray]:
    """The level's tiles, row by row, padded to ``TILE_PX`` at the right and bottom edges."""
    width, height = reader.info.level_dimensions[level]
    factor = 2**level
    for y in range(0, height, TILE_PX):
        rows = min(TILE_PX, height - y)
        band = reader.read_region((0, y * factor), level, (width, rows))
        for x in range(0, width, TILE_PX):
            tile = np.zeros((TILE_PX, TILE_PX, 3), dtype=np.uint8)
            piece = band[:, x : x + TILE_PX]
            tile[: piece.shape[0], : piece.shape[1]] = piece
            yield tile
