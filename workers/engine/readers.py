"""Slide readers behind one small interface: OpenSlide formats, TIFF (tiff_reader), images.

Every reader returns RGB uint8 arrays (rows, cols, 3) from ``read_region``, which takes
level-0 (x, y) and a (width, height) in the pixels of the level read, like OpenSlide.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import tifffile
from PIL import Image

from workers.engine import dicom
from workers.engine.channels import Channel
from workers.engine.read_errors import explain, looks_like_tiff
from workers.errors import InvalidInput, TooLarge, UnsupportedFormat

TIFF_SUFFIXES = {".tif", ".tiff", ".btf", ".tf8"}
# what the pipeline needs of a vendor's description; the rest (openslide.comment holds the
# whole ImageDescription: scanner user, original file name, date) may identify a patient
KEPT_PROPERTIES = {
    "openslide.vendor",
    "openslide.mpp-x",
    "openslide.mpp-y",
    "openslide.objective-power",
    "openslide.level-count",
    "openslide.bounds-x",
    "openslide.bounds-y",
    "openslide.bounds-width",
    "openslide.bounds-height",
    "openslide.background-color",
}
MIN_MPP, MAX_MPP = 0.01, 20.0  # plausible microns per pixel of a microscope image
CONVERT_BAND_PIXELS = 1_000_000  # plain images are converted to RGB this many pixels at a time
MAX_TILE_PIXELS = 4096 * 4096  # slides use tiles of 256 to 1024 px; OpenSlide allocates a whole one


@dataclass(frozen=True)
class SlideInfo:
    """What a client and the engine need to know about a slide."""

    width: int
    height: int
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    mpp_x: float | None
    mpp_y: float | None
    vendor: str
    reader: str
    properties: dict[str, str] = field(default_factory=dict)
    channels: tuple[Channel, ...] = ()  # fluorescence channels (empty: RGB or grey)

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_dimensions)


@dataclass(frozen=True)
class ReaderLimits:
    """Refuse files whose declared size would exhaust memory or disk."""

    max_slide_pixels: int = 2**32 - 1
    max_plain_image_pixels: int = 100_000_000
    max_pixels_per_byte: float = 1000.0  # of a TIFF, PNG or JPEG file: more is a bomb


class SlideReader(Protocol):
    """What the engine needs from a slide."""

    @property
    def info(self) -> SlideInfo:
        """Dimensions, levels, pixel size and vendor."""
        ...

    def read_region(self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 pixels (rows, cols, 3) of ``size`` at ``level`` from level-0 ``l0_xy``."""
        ...

    def close(self) -> None:
        """Release file handles."""
        ...


def to_rgb_uint8(pixels: np.ndarray, max_value: float | None = None) -> np.ndarray:
    """Any (rows, cols[, channels]) array as RGB uint8; higher bit depths scaled by max_value."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.dtype != np.uint8:
        peak = max_value or float(np.iinfo(pixels.dtype).max if pixels.dtype.kind in "ui" else 1.0)
        pixels = np.clip(pixels.astype(np.float32) * (255.0 / max(peak, 1e-9)), 0, 255)
        pixels = pixels.astype(np.uint8)
    channels = pixels.shape[2]
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if channels == 2:
        return np.concatenate([pixels, pixels[..., :1]], axis=2)
    return np.ascontiguousarray(pixels[..., :3])


def check_dimensions(width: int, height: int, limit: int) -> None:
    """Refuse empty slides and slides larger than the configured pixel limit."""
    if width <= 0 or height <= 0:
        raise InvalidInput(f"slide declares an empty image ({width} x {height})")
    if width * height > limit:
        raise TooLarge(
            f"slide declares {width} x {height} pixels, more than the limit of {limit} pixels"
        )


def check_tile_size(path: Path) -> None:
    """Refuse a TIFF declaring tiles larger than MAX_TILE_PIXELS.

    OpenSlide allocates a whole tile at once (4 bytes a pixel), and where that fails GLib
    aborts the process rather than raise: a 70 KB TIFF declaring 65536 x 65536 px tiles
    killed its reader.
    """
    with tifffile.TiffFile(str(path)) as tif:
        for index, page in enumerate(tif.pages):
            width, height = getattr(page, "tilewidth", 0), getattr(page, "tilelength", 0)
            if width * height > MAX_TILE_PIXELS:
                raise TooLarge(
                    f"{path.name} declares tiles of {width} x {height} pixels (image {index}), "
                    f"more than the {MAX_TILE_PIXELS:,} pixels a slide's tile may hold"
                )


def check_pixel_density(path: Path, width: int, height: int, limit: float) -> None:
    """Refuse a file that declares far more pixels than its bytes could encode.

    Image codecs need some bytes per pixel even for a blank image (deflate at most ~1000-fold
    smaller than 8-bit RGB); a tiny file declaring a huge image is a decompression bomb or a
    damaged header, and decoding it would take minutes and gigabytes.
    """
    size = max(path.stat().st_size, 1)
    if width * height > limit * size:
        raise TooLarge(
            f"{path.name} declares {width} x {height} pixels in {size:,} bytes "
            f"({width * height / size:,.0f} pixels per byte, more than the {limit:g} a real "
            "image needs): a decompression bomb or a damaged header"
        )


class OpenSlideReader:
    """SVS, NDPI, MRXS, SCN, Philips, Ventana, generic tiled TIFF, ... through OpenSlide."""

    def __init__(self, path: Path) -> None:
        import openslide

        self._slide = openslide.OpenSlide(str(path))
        props = dict(self._slide.properties)
        self.info = SlideInfo(
            width=self._slide.dimensions[0],
            height=self._slide.dimensions[1],
            level_dimensions=[(int(w), int(h)) for w, h in self._slide.level_dimensions],
            level_downsamples=[float(d) for d in self._slide.level_downsamples],
            mpp_x=plausible_mpp(positive_float(props.get("openslide.mpp-x"))),
            mpp_y=plausible_mpp(positive_float(props.get("openslide.mpp-y"))),
            vendor=props.get("openslide.vendor", "unknown"),
            reader="openslide",
            properties={k: v for k, v in props.items() if k in KEPT_PROPERTIES},
        )
        self.failed = False

    def read_region(self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB pixels; transparent (outside the scanned area) becomes white."""
        try:
            rgba = np.asarray(self._slide.read_region(l0_xy, level, size))
        except Exception:
            self.failed = True  # OpenSlide's errors are sticky: every later read would fail
            raise
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = 255
        return rgb

    def close(self) -> None:
        """Close the slide."""
        self._slide.close()


class ImageReader:
    """PNG, JPEG and other single-resolution images, decoded once into memory."""

    def __init__(self, path: Path, limits: ReaderLimits) -> None:
        max_pixels = min(limits.max_slide_pixels, limits.max_plain_image_pixels)
        with _open_image(path, max_pixels) as image:
            width, height = image.size
            check_dimensions(width, height, max_pixels)
            check_pixel_density(path, width, height, limits.max_pixels_per_byte)
            dpi = image.info.get("dpi")
            image.load()
            self._pixels = _decoded_rgb(image)
        mpp = plausible_mpp(25400.0 / float(dpi[0])) if dpi and float(dpi[0]) > 1 else None
        self.info = SlideInfo(
            width=width,
            height=height,
            level_dimensions=[(width, height)],
            level_downsamples=[1.0],
            mpp_x=mpp,
            mpp_y=mpp,
            vendor="image",
            reader="pillow",
        )

    def read_region(self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """A copy of a box of the image."""
        x, y = l0_xy
        return self._pixels[y : y + size[1], x : x + size[0]].copy()

    def close(self) -> None:
        """Drop the decoded pixels."""
        self._pixels = np.zeros((0, 0, 3), dtype=np.uint8)


class ArrayReader:
    """An in-memory (rows, cols, channels) uint8 image as a one-level slide.

    Unlike the file readers it keeps the array's channels (a grey frame stays one channel),
    so the engine can run 1-channel models on it without three copies.
    """

    def __init__(self, pixels: np.ndarray, mpp: float | None = None) -> None:
        self._pixels = pixels
        height, width = pixels.shape[:2]
        self.info = SlideInfo(
            width, height, [(width, height)], [1.0], mpp, mpp, vendor="memory", reader="array"
        )

    def read_region(self, l0_xy: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """A copy of a box of the image."""
        x, y = l0_xy
        return self._pixels[y : y + size[1], x : x + size[0]].copy()

    def close(self) -> None:
        """Nothing to release."""


def _decoded_rgb(image: Image.Image) -> np.ndarray:
    """A loaded image as RGB uint8, converted a band of rows at a time.

    Converting it whole (alpha onto white, then to numpy) held four copies at once: a
    100-megapixel RGBA PNG took 1.4 GB; by bands it takes the decoded image and the result.
    """
    width, height = image.size
    rgb = np.empty((height, width, 3), np.uint8)
    rows = max(1, CONVERT_BAND_PIXELS // width)
    for top in range(0, height, rows):
        band = image.crop((0, top, width, min(height, top + rows)))
        rgb[top : top + band.height] = to_rgb_uint8(np.asarray(_pil_to_array_ready(band)))
    return rgb


def _pil_to_array_ready(image: Image.Image) -> Image.Image:
    """Bring palette, 16-bit and alpha images into modes numpy converts meaningfully."""
    if image.mode in ("RGB", "L", "I;16", "I;16B", "I;16L"):
        return image
    if image.mode in ("RGBA", "LA", "P", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def plausible_mpp(value: float | None) -> float | None:
    """A file's microns per pixel, or None where no microscope would give it.

    Image editors write 72 to 1200 dpi by default (21 to 353 um/px); slide scanners and
    microscope cameras give 0.05 to a few um/px.
    """
    return value if value is not None and MIN_MPP <= value <= MAX_MPP else None


def positive_float(value: str | None) -> float | None:
    """A finite positive number read from text, or None."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number and math.isfinite(number) and number > 0 else None


def open_slide(path: Path, limits: ReaderLimits | None = None) -> SlideReader:
    """Open any supported slide with the reader that fits it.

    Raises:
        UnsupportedFormat: no reader recognises the file.
        TooLarge: the declared dimensions exceed ``limits``.
        InvalidInput: the file is recognised but damaged.

    """
    limits = limits or ReaderLimits()
    if not path.is_file():
        raise InvalidInput(f"slide file {path.name} is missing")
    is_tiff = looks_like_tiff(path)
    try:
        reader = _choose_reader(path, limits, is_tiff)
    except Exception as exc:  # every library raises its own errors for broken files
        raise explain(path, exc) from exc
    if reader.info.reader != "pillow":
        check_dimensions(reader.info.width, reader.info.height, limits.max_slide_pixels)
    if is_tiff:  # SVS, NDPI, generic TIFF, ... (MRXS and DICOM series keep data elsewhere)
        check_pixel_density(path, reader.info.width, reader.info.height, limits.max_pixels_per_byte)
    return reader


def _open_image(path: Path, max_pixels: int) -> Image.Image:
    """A Pillow image (header read, pixels not yet) under Pillow's bomb guard at our limit."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise TooLarge(
            f"{path.name} declares more than the limit of {max_pixels:,} pixels, as a "
            f"decompression bomb would ({exc})"
        ) from exc


def _choose_reader(path: Path, limits: ReaderLimits, is_tiff: bool) -> SlideReader:
    import openslide

    from workers.engine.tiff_reader import TiffReader  # it builds on this module's types

    if is_tiff and _is_ome_tiff(path):
        return TiffReader(path, limits)
    vendor = openslide.OpenSlide.detect_format(str(path))
    if vendor is not None:
        if is_tiff:
            check_tile_size(path)
        return OpenSlideReader(path)
    if is_tiff:
        return TiffReader(path, limits)
    not_a_slide = dicom.not_whole_slide_reason(path)
    if not_a_slide:
        raise UnsupportedFormat(not_a_slide)
    from PIL import UnidentifiedImageError

    try:
        max_pixels = min(limits.max_slide_pixels, limits.max_plain_image_pixels)
        with _open_image(path, max_pixels) as probe:
            probe.size  # noqa: B018 - parse the header only
    except UnidentifiedImageError as exc:
        raise UnsupportedFormat(
            f"{path.name} is not a slide or image format this server reads "
            "(OpenSlide formats, DICOM-WSI, OME-TIFF, TIFF, PNG, JPEG)"
        ) from exc
    return ImageReader(path, limits)


def _is_ome_tiff(path: Path) -> bool:
    with tifffile.TiffFile(str(path)) as tif:
        return bool(tif.is_ome)
