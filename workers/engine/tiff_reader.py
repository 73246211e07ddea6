"""OME-TIFF, QPTIFF and plain (tiled or striped, pyramidal or not) TIFF through tifffile.

Fluorescence channels are kept (read by :meth:`TiffReader.read_channels`, restored through
:class:`ChannelView`); stacks of same-size images are refused, not cut to their first page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from workers.engine.channels import Channel, composite, file_channels, to_uint8, windows
from workers.engine.readers import (
    ReaderLimits,
    SlideInfo,
    check_dimensions,
    check_pixel_density,
    plausible_mpp,
    positive_float,
    to_rgb_uint8,
)
from workers.errors import InvalidInput, TooLarge, UnsupportedFormat


class TiffReader:
    """OME-TIFF and plain (tiled or striped, pyramidal or not) TIFF through tifffile."""

    def __init__(self, path: Path, limits: ReaderLimits) -> None:
        import zarr

        self._tif = tifffile.TiffFile(str(path))
        series = self._tif.series[0]
        self._axes = series.axes
        if "Y" not in self._axes or "X" not in self._axes:
            raise UnsupportedFormat(f"TIFF series has no Y/X axes (axes {self._axes!r})")
        _refuse_stacks(path, self._tif)
        self._channel_axis = _channel_axis(series.axes, series.shape)
        levels = series.levels
        dims = [
            (lvl.shape[self._axes.index("X")], lvl.shape[self._axes.index("Y")]) for lvl in levels
        ]
        check_dimensions(*dims[0], limits.max_slide_pixels)
        check_pixel_density(path, *dims[0], limits.max_pixels_per_byte)
        self.failed = False
        store = series.aszarr()
        opened: Any = zarr.open(store, mode="r")
        self._levels: list[Any] = (
            [opened[str(i)] for i in range(len(levels))] if len(levels) > 1 else [opened]
        )
        mpp_x, mpp_y = (plausible_mpp(value) for value in _tiff_mpp(self._tif))
        self._downsamples = [dims[0][0] / d[0] for d in dims]
        self._max_value = self._estimate_max_value(series.dtype)
        self.channels = self._fluorescence_channels(series.shape)
        self.info = SlideInfo(
            width=dims[0][0],
            height=dims[0][1],
            level_dimensions=dims,
            level_downsamples=self._downsamples,
            mpp_x=mpp_x,
            mpp_y=mpp_y,
            vendor="qptiff" if self._tif.is_qpi else "ome-tiff" if self._tif.is_ome else "tiff",
            reader="tifffile",
            channels=tuple(self.channels),
        )

    def _fluorescence_channels(self, shape: tuple[int, ...]) -> list[Channel]:
        """The channels of a multi-channel (not RGB) image, windowed from its smallest level."""
        if self._channel_axis is None:
            return []
        count = shape[self._channel_axis]
        named = file_channels(self._tif, count)
        smallest = self._levels[-1]
        if smallest.size > 50_000_000:
            raise TooLarge("the smallest level of this multi-channel image is too large to window")
        sample = self._read_native((0, 0), len(self._levels) - 1, smallest.shape[::-1][:2])
        return [
            Channel(name, color, window)
            for (name, color), window in zip(named, windows(sample), strict=True)
        ]

    def _estimate_max_value(self, dtype: np.dtype) -> float | None:
        """Display range of >8-bit images from the smallest level's 99.9th percentile."""
        if np.dtype(dtype) == np.uint8:
            return None
        smallest = self._levels[-1]
        if smallest.size > 50_000_000:
            return float(np.iinfo(dtype).max) if np.dtype(dtype).kind in "ui" else 1.0
        return float(np.percentile(np.asarray(smallest[...]), 99.9)) or 1.0

    def read_region(self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB pixels of a box of the level (channels in false colour); other axes at 0."""
        pixels = self._read_native(l0_xy, level, size)
        if self.channels:
            return composite(to_uint8(pixels, self.channels), [c.color for c in self.channels])
        return to_rgb_uint8(pixels, self._max_value)

    def read_channels(
        self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]
    ) -> np.ndarray:
        """Every fluorescence channel (rows, cols, channels), stretched to uint8 by its window."""
        return to_uint8(self._read_native(l0_xy, level, size), self.channels)

    def _read_native(self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """(rows, cols, samples or channels) of a box of the level, in the file's type."""
        downsample = self._downsamples[level]
        x0, y0 = round(l0_xy[0] / downsample), round(l0_xy[1] / downsample)
        index: list[int | slice] = []
        for axis in self._axes:
            if axis == "Y":
                index.append(slice(y0, y0 + size[1]))
            elif axis == "X":
                index.append(slice(x0, x0 + size[0]))
            elif axis in "SC":
                index.append(slice(None))
            else:
                index.append(0)
        try:
            pixels = np.asarray(self._levels[level][tuple(index)])
        except Exception:
            self.failed = True  # a damaged tile; the file may be replaced before the next read
            raise
        kept = [a for a in self._axes if a in "YXSC"]
        if "C" in kept and "S" in kept:
            pixels = pixels[..., 0] if kept[-1] == "S" else pixels
            kept.remove("S")
        order = [kept.index("Y"), kept.index("X")] + [i for i, a in enumerate(kept) if a in "SC"]
        pixels = np.transpose(pixels, order)
        return pixels if pixels.ndim == 3 else pixels[..., None]

    def close(self) -> None:
        """Close the file."""
        self._tif.close()


def _channel_axis(axes: str, shape: tuple[int, ...]) -> int | None:
    """The axis of two or more fluorescence channels (not RGB samples), if any."""
    if "C" not in axes or "S" in axes or shape[axes.index("C")] < 2:
        return None
    return axes.index("C")


class ChannelView:
    """A multi-channel slide read channel by channel: what restoration runs on."""

    def __init__(self, source: TiffReader) -> None:
        self.source = source
        self.info = source.info

    def read_region(self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Every channel (rows, cols, channels) uint8, windowed."""
        return self.source.read_channels(l0_xy, level, size)

    def close(self) -> None:
        """The source stays open (it is shared)."""


STACK_AXES = {"T": "time points", "Z": "focal planes", "I": "images", "Q": "images"}


def _refuse_stacks(path: Path, tif: tifffile.TiffFile) -> None:
    """A TIFF of several images of one size is a stack, not a slide: say so, drop none.

    tifffile shows a stack as an axis of the first series (OME, ImageJ, shaped files) or,
    for pages written one by one, as further series of the same shape.
    """
    series = tif.series[0]
    stacked = [
        (STACK_AXES[axis], size)
        for axis, size in zip(series.axes, series.shape, strict=True)
        if axis in STACK_AXES and size > 1
    ]
    alike = sum(1 for other in tif.series if other.shape == series.shape)
    if alike > 1:
        stacked.append(("images", alike))
    if stacked:
        what, size = stacked[0]
        raise InvalidInput(
            f"{path.name} holds a stack of {size} {what} (axes {series.axes}), not one "
            "slide: upload frames from a scanning microscope with POST /v1/sequences, or "
            "one image per slide"
        )


def _tiff_mpp(tif: tifffile.TiffFile) -> tuple[float | None, float | None]:
    """Microns per pixel from OME metadata or the TIFF resolution tags."""
    if tif.is_ome and tif.ome_metadata:
        meta = tifffile.xml2dict(tif.ome_metadata).get("OME", {})
        image = meta.get("Image", {})
        pixels = (image[0] if isinstance(image, list) else image).get("Pixels", {})
        return positive_float(str(pixels.get("PhysicalSizeX"))), positive_float(
            str(pixels.get("PhysicalSizeY"))
        )
    page = tif.pages.first
    tags = page.tags
    unit = tags.get("ResolutionUnit")
    per_um = {2: 25400.0, 3: 10000.0}.get(int(unit.value) if unit else 0)
    if per_um is None:
        return None, None
    xres, yres = tags.get("XResolution"), tags.get("YResolution")

    def mpp(tag: object) -> float | None:
        if tag is None:
            return None
        num, den = tag.value  # type: ignore[attr-defined]
        return positive_float(str(per_um * den / num)) if num else None

    return mpp(xres), mpp(yres)
