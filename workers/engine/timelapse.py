"""Time-lapse OME-Zarr (NGFF 0.4, Zarr v2 format) with axes t, c, y, x: create, fill, read.

Level ``k`` is (frames, channels, rows, cols) uint8, level 0 halved ``k`` times (sizes
rounded up, as :func:`omezarr.pyramid_sizes`), chunked one frame and ``chunk_px`` square.
Each frame writes every level itself, so frames can be written in any order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numcodecs
import numpy as np
import zarr

from workers.engine import omezarr
from workers.engine.readers import SlideInfo, to_rgb_uint8
from workers.errors import NotFound

GREY = "FFFFFF"
COLORS = ("00FFFF", "FF00FF", "FFFF00", "FF0000", "00FF00", "0000FF")


def create_time_store(
    path: Path, frames: int, width: int, height: int, channels: int, chunk_px: int
) -> None:
    """Create the group and its empty level arrays (idempotent: an existing store is kept)."""
    sizes = omezarr.pyramid_sizes(width, height)
    if (path / str(len(sizes) - 1) / ".zarray").exists():
        return
    group = zarr.open_group(str(path), mode="a", zarr_format=2)
    for level, (level_width, level_height) in enumerate(sizes):
        group.create_array(
            name=str(level),
            shape=(frames, channels, level_height, level_width),
            chunks=(1, channels, chunk_px, chunk_px),
            dtype="uint8",
            fill_value=0,
            compressors=numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE),
            chunk_key_encoding={"name": "v2", "separator": "/"},
            overwrite=True,
        )


def _levels(path: Path, mode: Literal["r", "r+"] = "r") -> list[zarr.Array[Any]]:
    """The store's level arrays "0", "1", ... in order."""
    levels: list[zarr.Array[Any]] = []
    while (path / str(len(levels)) / ".zarray").exists():
        levels.append(zarr.open_array(str(path / str(len(levels))), mode=mode, zarr_format=2))
    if not levels:
        raise NotFound(f"no time-lapse store at {path.name}")
    return levels


def write_frame(path: Path, t: int, pixels: np.ndarray) -> None:
    """Write frame ``t`` ((rows, cols) or (rows, cols, channels) uint8) at every level."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    levels = _levels(path, "r+")
    expected = (levels[0].shape[2], levels[0].shape[3], levels[0].shape[1])
    if pixels.shape != expected or pixels.dtype != np.uint8:
        raise ValueError(f"frame is {pixels.dtype} {pixels.shape}, not uint8 {expected}")
    for level, array in enumerate(levels):
        if level:
            pixels = omezarr.downsample_2x(pixels)
        array[t] = np.moveaxis(pixels, 2, 0)


def tcyx_axes(mpp: float | None, frame_interval_s: float | None) -> list[dict[str, str]]:
    """NGFF axes ``t, c, y, x``; units where the interval and pixel size are known."""
    time = {"name": "t", "type": "time", **({"unit": "second"} if frame_interval_s else {})}
    return [time, *omezarr.cyx_axes("micrometer" if mpp else None)]


def _omero_channel(label: str, color: str, low: int, high: int) -> dict[str, Any]:
    return {
        "label": label,
        "color": color,
        "active": True,
        "coefficient": 1.0,
        "family": "linear",
        "inverted": False,
        "window": {"min": 0, "max": 255, "start": low, "end": max(high, low + 1)},
    }


def write_time_metadata(
    path: Path,
    name: str,
    mpp: float | None,
    frame_interval_s: float | None,
    channel_labels: list[str],
    provenance: dict[str, Any],
) -> None:
    """Write NGFF 0.4 ``multiscales`` and ``omero`` attributes plus our provenance.

    The display window of each channel spans its values in the smallest level, all frames.
    """
    levels = _levels(path)
    channels = levels[0].shape[1]
    if len(channel_labels) != channels:
        raise ValueError(f"{len(channel_labels)} labels for {channels} channels")
    colors = (GREY,) if channels == 1 else omezarr.CHANNEL_COLORS if channels == 3 else COLORS
    smallest = np.asarray(levels[-1][...])
    lows, highs = smallest.min(axis=(0, 2, 3)), smallest.max(axis=(0, 2, 3))
    datasets = [
        {
            "path": str(level),
            "coordinateTransformations": [
                {
                    "type": "scale",
                    "scale": [frame_interval_s or 1.0, 1.0, *[(mpp or 1.0) * 2.0**level] * 2],
                }
            ],
        }
        for level in range(len(levels))
    ]
    omero_channels = [
        _omero_channel(label, colors[i % len(colors)], int(lows[i]), int(highs[i]))
        for i, label in enumerate(channel_labels)
    ]
    attributes: dict[str, Any] = {
        "multiscales": [
            {
                "version": omezarr.NGFF_VERSION,
                "name": name,
                "axes": tcyx_axes(mpp, frame_interval_s),
                "datasets": datasets,
                "type": "mean",
                "metadata": {"method": "2x2 block mean", "description": "NGFF 0.4"},
            }
        ],
        "omero": {
            "name": name,
            "version": omezarr.NGFF_VERSION,
            "rdefs": {"model": "greyscale" if channels == 1 else "color", "defaultT": 0},
            "channels": omero_channels,
        },
        "restoration": provenance,
    }
    zarr.open_group(str(path), mode="a", zarr_format=2).attrs.update(attributes)


class TimeFrameReader:
    """One time point of a time-lapse store, read like a slide (RGB; grey is replicated)."""

    def __init__(self, path: Path, t: int) -> None:
        self._arrays = _levels(path)
        self.frames = int(self._arrays[0].shape[0])
        if not 0 <= t < self.frames:
            raise NotFound(f"no frame {t} (the store holds {self.frames})")
        self.t = t
        dims = [(int(a.shape[3]), int(a.shape[2])) for a in self._arrays]
        mpp = _mpp(dict(zarr.open_group(str(path), mode="r", zarr_format=2).attrs))
        self.info = SlideInfo(
            width=dims[0][0],
            height=dims[0][1],
            level_dimensions=dims,
            level_downsamples=[2.0**k for k in range(len(dims))],
            mpp_x=mpp,
            mpp_y=mpp,
            vendor="ome-zarr",
            reader="zarr",
        )

    def read_region(self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB pixels of a box of one level of the frame (clipped at the level's edge)."""
        x, y = l0_xy[0] >> level, l0_xy[1] >> level
        block = self._arrays[level][self.t, :, y : y + size[1], x : x + size[0]]
        return to_rgb_uint8(np.moveaxis(np.asarray(block), 0, 2))

    def close(self) -> None:
        """Nothing to release."""


def _mpp(attributes: dict[str, Any]) -> float | None:
    """Level 0's pixel size in micrometres, from the metadata when it states a unit."""
    if "multiscales" not in attributes:
        return None
    multiscales = attributes["multiscales"][0]
    if "unit" not in multiscales["axes"][-1]:
        return None
    return float(multiscales["datasets"][0]["coordinateTransformations"][0]["scale"][-1])
