"""Fluorescence channels: names and colours from the file, display windows, false colour.

A multi-channel slide keeps its channels through restoration; only what people look at
(thumbnails, Deep Zoom tiles, the tissue map) is a false-colour composite of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile

PALETTE = ("0000FF", "00FF00", "FF0000", "FF00FF", "00FFFF", "FFFF00", "FFFFFF")
LOW_PERCENTILE, HIGH_PERCENTILE = 0.1, 99.9


@dataclass(frozen=True)
class Channel:
    """One fluorescence channel: its name, display colour (RGB hex) and window."""

    name: str
    color: str
    window: tuple[float, float] = (0.0, 255.0)  # the file's values shown as black and full


def windows(sample: np.ndarray) -> list[tuple[float, float]]:
    """Per-channel (low, high) display windows of a (rows, cols, channels) sample."""
    flat = sample.reshape(-1, sample.shape[-1]).astype(np.float64)
    low = np.percentile(flat, LOW_PERCENTILE, axis=0)
    high = np.percentile(flat, HIGH_PERCENTILE, axis=0)
    return [(float(lo), float(max(hi, lo + 1e-6))) for lo, hi in zip(low, high, strict=True)]


def to_uint8(pixels: np.ndarray, channels: list[Channel]) -> np.ndarray:
    """(rows, cols, channels) of the file's values stretched to uint8 by each window."""
    low = np.array([c.window[0] for c in channels], dtype=np.float32)
    span = np.array([c.window[1] - c.window[0] for c in channels], dtype=np.float32)
    scaled = (pixels.astype(np.float32) - low) * (255.0 / span)
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def composite(pixels: np.ndarray, colors: list[str]) -> np.ndarray:
    """RGB uint8 of (rows, cols, channels) uint8, each channel in its colour, added."""
    rgb = np.array([[int(c[i : i + 2], 16) / 255.0 for i in (0, 2, 4)] for c in colors])
    mixed = pixels.astype(np.float32) @ rgb.astype(np.float32)
    out: np.ndarray = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return out


def file_channels(tif: tifffile.TiffFile, count: int) -> list[tuple[str, str]]:
    """(name, colour) of each channel from OME-XML or the QPTIFF page descriptions."""
    found: list[tuple[str | None, str | None]] = []
    if tif.is_ome and tif.ome_metadata:
        found = _ome_channels(tif.ome_metadata)
    elif tif.is_qpi:
        found = [_qptiff_channel(page.description) for page in tif.pages[:count]]  # type: ignore[union-attr]
    names = [(found[i][0] if i < len(found) else None) or f"channel {i + 1}" for i in range(count)]
    colors = [
        (found[i][1] if i < len(found) else None) or PALETTE[i % len(PALETTE)] for i in range(count)
    ]
    return list(zip(names, colors, strict=True))


def _ome_channels(xml: str) -> list[tuple[str | None, str | None]]:
    image: Any = tifffile.xml2dict(xml).get("OME", {}).get("Image", {})
    pixels = (image[0] if isinstance(image, list) else image).get("Pixels", {})
    channels = pixels.get("Channel", [])
    channels = channels if isinstance(channels, list) else [channels]
    return [(c.get("Name"), _ome_color(c.get("Color"))) for c in channels]


def _ome_color(value: object) -> str | None:
    """OME's signed 32-bit RGBA integer as RGB hex (None when absent or unreadable)."""
    try:
        rgba = int(str(value)) & 0xFFFFFFFF
    except ValueError:
        return None
    return f"{rgba >> 8:06X}"


def _qptiff_channel(description: str) -> tuple[str | None, str | None]:
    name = re.search(r"<Name>([^<]*)</Name>", description)
    color = re.search(r"<Color>\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*</Color>", description)
    hex_color = "".join(f"{int(v):02X}" for v in color.groups()) if color else None
    return (name.group(1).strip() if name else None), hex_color
