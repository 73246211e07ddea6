"""Pyramidal OME-Zarr (NGFF 0.4, Zarr v2 format) output: create, fill, downsample, describe.

Arrays are (c, y, x) uint8 RGB, chunked ``chunk_px`` square; level ``k`` is level 0 halved
``k`` times (sizes rounded up) until the largest side fits a thumbnail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numcodecs
import numpy as np
import zarr

from workers.engine.channels import Channel, composite, to_uint8, windows
from workers.engine.geometry import Box

NGFF_VERSION = "0.4"
THUMBNAIL_PX = 256
CHANNELS = ("red", "green", "blue")
CHANNEL_COLORS = ("FF0000", "00FF00", "0000FF")


def pyramid_sizes(
    width: int, height: int, thumbnail_px: int = THUMBNAIL_PX
) -> list[tuple[int, int]]:
    """(width, height) of each level, halving until the largest side is <= thumbnail_px."""
    sizes = [(width, height)]
    while max(sizes[-1]) > thumbnail_px:
        w, h = sizes[-1]
        sizes.append((math.ceil(w / 2), math.ceil(h / 2)))
    return sizes


def _create_level(
    group: zarr.Group, level: int, size: tuple[int, int], chunk_px: int, channels: int = 3
) -> zarr.Array[Any]:
    return group.create_array(
        name=str(level),
        shape=(channels, size[1], size[0]),
        chunks=(channels, chunk_px, chunk_px),
        dtype="uint8",
        fill_value=0,
        compressors=numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE),
        chunk_key_encoding={"name": "v2", "separator": "/"},
        overwrite=True,
    )


def create_store(path: Path, width: int, height: int, chunk_px: int, channels: int = 3) -> None:
    """Create the group and its empty level arrays (idempotent: an existing store is kept)."""
    sizes = pyramid_sizes(width, height)
    if (path / str(len(sizes) - 1) / ".zarray").exists():
        return
    group = zarr.open_group(str(path), mode="a", zarr_format=2)
    for level, size in enumerate(sizes):
        _create_level(group, level, size, chunk_px, channels)


def owned_levels(region_px: int, chunk_px: int, level_count: int) -> int:
    """How many levels (level 0 included) a region of ``region_px`` writes in whole chunks.

    Level ``k`` of a region starting at a multiple of ``region_px`` is chunk-aligned when
    ``region_px / 2**k`` is a multiple of ``chunk_px``; those levels are written by the
    region itself, from the pixels it holds, and the finish builds only the rest.
    """
    levels = 1
    while levels < level_count and (region_px >> levels) % chunk_px == 0 and region_px >> levels:
        levels += 1
    return levels


def write_levels(path: Path, box: Box, pixels: np.ndarray, levels: int = 1) -> None:
    """Write level 0 at ``box`` and levels 1 to ``levels - 1`` by 2x2 means of it.

    ``box`` must start at a multiple of ``2 ** (levels - 1)`` (a region's box does).
    """
    for level in range(levels):
        if level:
            pixels = downsample_2x(pixels)
        scaled = Box(box.x >> level, box.y >> level, pixels.shape[1], pixels.shape[0])
        write_box(path, scaled, pixels, level)


def _level(path: Path, level: int, mode: Literal["r", "r+"] = "r") -> zarr.Array[Any]:
    return zarr.open_array(str(path / str(level)), mode=mode, zarr_format=2)


def write_box(path: Path, box: Box, pixels: np.ndarray, level: int = 0) -> None:
    """Write RGB pixels (rows, cols, 3) at an output box; boxes should be chunk-aligned."""
    array = _level(path, level, "r+")
    rows, cols = box.slices()
    array[:, rows, cols] = np.moveaxis(pixels, 2, 0)


def read_box(path: Path, box: Box, level: int = 0) -> np.ndarray:
    """RGB pixels (rows, cols, 3) of a box of one level."""
    rows, cols = box.slices()
    pixels: np.ndarray = np.moveaxis(np.asarray(_level(path, level)[:, rows, cols]), 0, 2)
    return pixels


def downsample_2x(pixels: np.ndarray) -> np.ndarray:
    """Halve (rows, cols, c) by 2x2 averaging; an odd last row/col is repeated."""
    rows, cols = pixels.shape[:2]
    padded = pixels
    if rows % 2 or cols % 2:
        padded = np.pad(pixels, ((0, rows % 2), (0, cols % 2), (0, 0)), mode="edge")
    total = padded[0::2, 0::2].astype(np.uint16)
    total += padded[1::2, 0::2]
    total += padded[0::2, 1::2]
    total += padded[1::2, 1::2]
    quotient, remainder = total >> 2, total & 3  # the mean's rounding, half to even, in integers
    rounded = quotient + (remainder > 2) + ((remainder == 2) & (quotient & 1).astype(bool))
    half: np.ndarray = rounded.astype(np.uint8)
    return half


def build_pyramid(
    path: Path, chunk_px: int, first: int = 1, progress: Callable[[], None] = lambda: None
) -> list[tuple[int, int]]:
    """Fill levels ``first``.. from the level above, one output chunk at a time.

    ``progress`` is called after every chunk (a finish renews its job's lease with it).
    """
    base = _level(path, 0)
    sizes = pyramid_sizes(base.shape[2], base.shape[1])
    group = zarr.open_group(str(path), mode="a", zarr_format=2)
    for level in range(max(first, 1), len(sizes)):
        if not (path / str(level) / ".zarray").exists():  # a store from before 0.1's levels
            _create_level(group, level, sizes[level], chunk_px, base.shape[0])
        for box in chunk_boxes(sizes[level], chunk_px):
            parent = read_box(path, box.scaled(2), level - 1)
            write_box(path, box, downsample_2x(parent)[: box.height, : box.width], level)
            progress()
    return sizes


def chunk_boxes(size: tuple[int, int], chunk_px: int) -> list[Box]:
    """The chunk grid of a (width, height) level as boxes."""
    width, height = size
    return [
        Box(x, y, min(chunk_px, width - x), min(chunk_px, height - y))
        for y in range(0, height, chunk_px)
        for x in range(0, width, chunk_px)
    ]


def cyx_axes(unit: str | None) -> list[dict[str, str]]:
    """NGFF axes ``c, y, x``, the spatial ones in ``unit`` when it is known."""
    spatial = {"type": "space", **({"unit": unit} if unit else {})}
    return [{"name": "c", "type": "channel"}, {"name": "y", **spatial}, {"name": "x", **spatial}]


def write_metadata(
    path: Path,
    name: str,
    sizes: list[tuple[int, int]],
    mpp: tuple[float | None, float | None],
    provenance: dict[str, Any],
    channels: list[dict[str, str]] | None = None,
) -> None:
    """Write NGFF 0.4 ``multiscales`` and ``omero`` attributes plus our provenance.

    ``channels`` (name and colour of each fluorescence channel) replaces red, green and
    blue; their display windows come from the smallest level's percentiles.
    """
    mpp_x, mpp_y = mpp
    unit = "micrometer" if mpp_x and mpp_y else None
    datasets = []
    for level in range(len(sizes)):
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {
                        "type": "scale",
                        "scale": [1.0, (mpp_y or 1.0) * 2.0**level, (mpp_x or 1.0) * 2.0**level],
                    }
                ],
            }
        )
    group = zarr.open_group(str(path), mode="a", zarr_format=2)
    attributes: dict[str, Any] = {
        "multiscales": [
            {
                "version": NGFF_VERSION,
                "name": name,
                "axes": cyx_axes(unit),
                "datasets": datasets,
                "type": "mean",
                "metadata": {"method": "2x2 block mean", "description": "NGFF 0.4"},
            }
        ],
        "omero": {
            "name": name,
            "version": NGFF_VERSION,
            "rdefs": {"model": "color", "defaultZ": 0, "defaultT": 0},
            "channels": _omero_channels(path, len(sizes) - 1, channels),
        },
        "restoration": provenance,
    }
    group.attrs.update(attributes)


def _omero_channels(
    path: Path, smallest: int, channels: list[dict[str, str]] | None
) -> list[dict[str, Any]]:
    """``omero.channels``: RGB at full range, or named channels windowed on their data."""
    if channels is None:
        named = list(zip(CHANNELS, CHANNEL_COLORS, strict=True))
        ranges = [(0.0, 255.0)] * 3
    else:
        named = [(c["name"], c["color"]) for c in channels]
        sample = np.moveaxis(np.asarray(_level(path, smallest)[...]), 0, 2)
        ranges = windows(sample)
    return [
        {
            "label": label,
            "color": color,
            "active": True,
            "coefficient": 1.0,
            "family": "linear",
            "inverted": False,
            "window": {"min": 0, "max": 255, "start": round(low, 2), "end": round(high, 2)},
        }
        for (label, color), (low, high) in zip(named, ranges, strict=True)
    ]


class OmeZarrReader:
    """An OME-Zarr pyramid written by this module, read like a slide (for DZI and previews)."""

    def __init__(self, path: Path) -> None:
        group = zarr.open_group(str(path), mode="r", zarr_format=2)
        attributes: dict[str, Any] = dict(group.attrs)
        multiscales = attributes["multiscales"][0]
        self._arrays = [_level(path, int(d["path"])) for d in multiscales["datasets"]]
        dims = [(int(a.shape[2]), int(a.shape[1])) for a in self._arrays]
        scale = multiscales["datasets"][0]["coordinateTransformations"][0]["scale"]
        has_unit = "unit" in multiscales["axes"][2]
        from workers.engine.readers import SlideInfo

        omero = attributes.get("omero", {}).get("channels", [])
        labels = tuple(c.get("label") for c in omero)
        self.channels = (
            []
            if labels in ((), CHANNELS)
            else [
                Channel(c["label"], c["color"], (c["window"]["start"], c["window"]["end"]))
                for c in omero
            ]
        )
        self.info = SlideInfo(
            width=dims[0][0],
            height=dims[0][1],
            level_dimensions=dims,
            level_downsamples=[2.0**k for k in range(len(dims))],
            mpp_x=float(scale[2]) if has_unit else None,
            mpp_y=float(scale[1]) if has_unit else None,
            vendor="ome-zarr",
            reader="zarr",
            channels=tuple(self.channels),
        )

    def read_region(self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB pixels of a box of one level (clipped at the level's edge; channels in colour)."""
        pixels = self.read_channels(l0_xy, level, size)
        if not self.channels:
            return pixels
        shown = to_uint8(pixels, self.channels)
        return composite(shown, [c.color for c in self.channels])

    def read_channels(
        self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]
    ) -> np.ndarray:
        """The stored channels (rows, cols, channels) of a box of one level."""
        factor = 2**level
        x, y = l0_xy[0] // factor, l0_xy[1] // factor
        block = self._arrays[level][:, y : y + size[1], x : x + size[0]]
        return np.moveaxis(np.asarray(block), 0, 2)

    def close(self) -> None:
        """Nothing to release."""
