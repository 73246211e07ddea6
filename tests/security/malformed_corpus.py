"""A deterministic corpus of malformed uploads, made from small valid seeds.

Truncations, byte flips, declared sizes that lie, IFD loops, decompression bombs, zip path
traversal and zip bombs, polyglots, wrong extensions, empty files and odd file names. Every
sample names the route it goes to: slides (``POST /v1/slides``) or frame sequences.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
import tifffile
from PIL import Image
from pydicom.uid import generate_uid

from tests.engine.test_dicom import dicom_instance
from tests.engine.test_readers import bomb_tiff
from tests.fixtures import tissue_image, write_pyramid_tiff

Route = Literal["slides", "sequences"]
MIB = 2**20
S_IFLNK = 0o120000


@dataclass(frozen=True)
class Sample:
    """One file to upload: what it is, its bytes, the name the client gives it, its route."""

    case: str
    data: bytes
    filename: str
    route: Route = "slides"


@dataclass(frozen=True)
class Seed:
    """A valid file the variants are made from."""

    name: str
    data: bytes
    filename: str
    route: Route


# --- seeds -----------------------------------------------------------------------------


def _pyramid_tiff(folder: Path) -> bytes:
    return write_pyramid_tiff(folder / "seed.tif", tissue_image(384, 512), levels=2).read_bytes()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(tissue_image(160, 200, seed=1)).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(tissue_image(160, 200, seed=2)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _ome_tiff() -> bytes:
    buffer = io.BytesIO()
    metadata = {"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5}
    pixels = tissue_image(256, 320, seed=3)
    tifffile.imwrite(
        buffer, pixels, ome=True, photometric="rgb", tile=(128, 128), metadata=metadata
    )
    return buffer.getvalue()


def _dicom() -> bytes:
    buffer = io.BytesIO()
    instance = dicom_instance(tissue_image(256, 256, seed=4), generate_uid(), 0.5)
    instance.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _zip(members: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, payload in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = (S_IFLNK | 0o777) << 16
            bundle.writestr(info, payload)
    return buffer.getvalue()


def _gray_frames(count: int = 4, side: int = 64) -> list[np.ndarray]:
    base = tissue_image(side + 8 * count, side + 8 * count, seed=5)[..., 1]
    return [
        np.ascontiguousarray(base[4 * k : 4 * k + side, 4 * k : 4 * k + side]) for k in range(count)
    ]


def _png_of(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _frames_zip() -> bytes:
    return _zip({f"scan/frame_{k + 1}.png": _png_of(f) for k, f in enumerate(_gray_frames())})


def _pages_tiff() -> bytes:
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as tif:
        for frame in _gray_frames():
            tif.write(frame, photometric="minisblack")
    return buffer.getvalue()


def _mp4() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=5)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for pixels in _gray_frames():
            frame = av.VideoFrame.from_ndarray(np.repeat(pixels[..., None], 3, 2), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


def seeds(folder: Path) -> list[Seed]:
    """The valid files: slides of each reader, and frame sequences of each container."""
    tiff = _pyramid_tiff(folder)
    return [
        Seed("tiff", tiff, "slide.tif", "slides"),
        Seed("png", _png(), "image.png", "slides"),
        Seed("jpeg", _jpeg(), "image.jpg", "slides"),
        Seed("ome", _ome_tiff(), "image.ome.tif", "slides"),
        Seed("dicom", _dicom(), "level0.dcm", "slides"),
        Seed("slide-zip", _zip({"case/slide.tif": tiff}), "case.zip", "slides"),
        Seed("frames-zip", _frames_zip(), "scan.zip", "sequences"),
        Seed("pages-tiff", _pages_tiff(), "scan.tif", "sequences"),
        Seed("mp4", _mp4(), "scan.mp4", "sequences"),
    ]


# --- generic damage ----------------------------------------------------------------------


def truncations(seed: Seed) -> Iterator[Sample]:
    """The seed cut at fixed offsets and at fractions of its length."""
    size = len(seed.data)
    cuts = {1, 4, 8, 16, 64, 512, size // 8, size // 4, size // 2, 3 * size // 4, size - 64}
    cuts.add(size - 1)
    for cut in sorted(c for c in cuts if 0 < c < size):
        yield Sample(f"truncated/{seed.name}@{cut}", seed.data[:cut], seed.filename, seed.route)


def byte_flips(seed: Seed) -> Iterator[Sample]:
    """The seed with one byte inverted: in its magic and header, and at random places."""
    rng = np.random.default_rng(len(seed.data))
    places = {0, 3, 4, 7, *(int(p) for p in rng.integers(8, len(seed.data), 4))}
    for place in sorted(places):
        data = bytearray(seed.data)
        data[place] ^= 0xFF
        yield Sample(f"flipped/{seed.name}@{place}", bytes(data), seed.filename, seed.route)


# --- TIFF structure: declared sizes that lie, IFD loops ---------------------------------


def tiff_ifds(data: bytes) -> list[int]:
    """The offsets of a little-endian classic TIFF's IFDs, in chain order."""
    assert data[:4] == b"II*\x00"
    offsets, (offset,) = [], struct.unpack_from("<I", data, 4)
    while offset and offset not in offsets and offset < len(data):
        offsets.append(offset)
        (count,) = struct.unpack_from("<H", data, offset)
        (offset,) = struct.unpack_from("<I", data, offset + 2 + 12 * count)
    return offsets


def tiff_entry(data: bytes, ifd: int, tag: int) -> int | None:
    """Where the entry of ``tag`` sits in the IFD at ``ifd`` (None: no such tag)."""
    (count,) = struct.unpack_from("<H", data, ifd)
    for index in range(count):
        at = ifd + 2 + 12 * index
        if struct.unpack_from("<H", data, at)[0] == tag:
            return at
    return None


def _set_tag(data: bytes, tag: int, value: int, count: int | None = None, ifd: int = 0) -> bytes:
    """The TIFF with ``tag`` in its ``ifd``-th IFD made one LONG ``value`` (or a new count)."""
    out = bytearray(data)
    at = tiff_entry(data, tiff_ifds(data)[ifd], tag)
    if at is None:
        return data
    if count is not None:
        struct.pack_into("<I", out, at + 4, count)
    else:
        struct.pack_into("<HII", out, at + 2, 4, 1, value)
    return bytes(out)


def _next_ifd(data: bytes, ifd: int, target: int) -> bytes:
    """The TIFF with the ``ifd``-th IFD's next-IFD pointer set to ``target``."""
    out = bytearray(data)
    offset = tiff_ifds(data)[ifd]
    (count,) = struct.unpack_from("<H", data, offset)
    struct.pack_into("<I", out, offset + 2 + 12 * count, target)
    return bytes(out)


WIDTH, HEIGHT, BITS, COMPRESSION, PHOTOMETRIC, SAMPLES = 256, 257, 258, 259, 262, 277
STRIP_OFFSETS, STRIP_COUNTS, TILE_W, TILE_H, TILE_OFFSETS, TILE_COUNTS = (
    273,
    279,
    322,
    323,
    324,
    325,
)


def tiff_lies(seed: Seed) -> Iterator[Sample]:
    """Width, height, tiles, samples and codec declared wrong; next-IFD pointers that loop."""
    data = seed.data
    first = tiff_ifds(data)[0]
    lies: list[tuple[str, Callable[[], bytes]]] = [
        ("width-0", lambda: _set_tag(data, WIDTH, 0)),
        ("width-huge", lambda: _set_tag(data, WIDTH, 2**31 - 1)),
        ("width-65535", lambda: _set_tag(data, WIDTH, 65535)),
        ("height-0", lambda: _set_tag(data, HEIGHT, 0)),
        ("height-huge", lambda: _set_tag(data, HEIGHT, 2**31 - 1)),
        ("both-4e9", lambda: _set_tag(_set_tag(data, WIDTH, 2**32 - 1), HEIGHT, 2**32 - 1)),
        ("samples-0", lambda: _set_tag(data, SAMPLES, 0)),
        ("samples-255", lambda: _set_tag(data, SAMPLES, 255)),
        ("bits-0", lambda: _set_tag(data, BITS, 0)),
        ("compression-unknown", lambda: _set_tag(data, COMPRESSION, 65000)),
        ("photometric-unknown", lambda: _set_tag(data, PHOTOMETRIC, 999)),
        ("tile-0", lambda: _set_tag(data, TILE_W, 0)),
        ("tile-16", lambda: _set_tag(_set_tag(data, TILE_W, 16), TILE_H, 16)),
        ("tile-65536", lambda: _set_tag(_set_tag(data, TILE_W, 65536), TILE_H, 65536)),
        ("tile-count-1", lambda: _set_tag(data, TILE_OFFSETS, 0, count=1)),
        ("tile-count-huge", lambda: _set_tag(data, TILE_OFFSETS, 0, count=2**30)),
        ("tile-offsets-past-end", lambda: _set_tag(data, TILE_OFFSETS, 2**31)),
        ("strip-count-huge", lambda: _set_tag(data, STRIP_OFFSETS, 0, count=2**30)),
        ("strip-bytes-huge", lambda: _set_tag(data, STRIP_COUNTS, 2**31)),
        ("first-ifd-past-end", lambda: data[:4] + struct.pack("<I", 2**31) + data[8:]),
        ("first-ifd-odd", lambda: data[:4] + struct.pack("<I", first + 1) + data[8:]),
        ("ifd-count-huge", lambda: _ifd_count(data, 0xFFFF)),
        ("ifd-loop-self", lambda: _next_ifd(data, 0, first)),
        ("ifd-loop-last-to-first", lambda: _next_ifd(data, -1, first)),
        ("ifd-next-past-end", lambda: _next_ifd(data, -1, 2**31)),
        ("ifd-next-inside-entry", lambda: _next_ifd(data, -1, first + 6)),
    ]
    for name, make in lies:
        made = make()
        if made != data:
            yield Sample(f"tiff-lie/{seed.name}/{name}", made, seed.filename, seed.route)


def _ifd_count(data: bytes, count: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<H", out, tiff_ifds(data)[0], count)
    return bytes(out)


# --- PNG, JPEG, DICOM declared sizes ------------------------------------------------------


def _png_ihdr(data: bytes, width: int, height: int, fix_crc: bool = True) -> bytes:
    out = bytearray(data)
    struct.pack_into(">II", out, 16, width, height)
    if fix_crc:
        struct.pack_into(">I", out, 29, zlib.crc32(bytes(out[12:29])))
    return bytes(out)


def png_lies(seed: Seed) -> Iterator[Sample]:
    """IHDR sizes that lie, with a recomputed CRC (and one without)."""
    sizes = {"0x0": (0, 0), "1x1": (1, 1), "huge": (2**31 - 1, 2**31 - 1), "wide": (100_000, 1)}
    sizes["bomb"] = (60_000, 60_000)
    for name, (width, height) in sizes.items():
        made = _png_ihdr(seed.data, width, height)
        yield Sample(f"png-lie/{name}", made, seed.filename, seed.route)
    made = _png_ihdr(seed.data, 3000, 3000, fix_crc=False)
    yield Sample("png-lie/bad-crc", made, seed.filename, seed.route)


def jpeg_lies(seed: Seed) -> Iterator[Sample]:
    """SOF0 sizes that lie: zero, one pixel, 65535 squared."""
    sof = seed.data.index(b"\xff\xc0")
    for name, (height, width) in {"0x0": (0, 0), "1x1": (1, 1), "bomb": (65535, 65535)}.items():
        out = bytearray(seed.data)
        struct.pack_into(">HH", out, sof + 5, height, width)
        yield Sample(f"jpeg-lie/{name}", bytes(out), seed.filename, seed.route)


def dicom_lies(seed: Seed) -> Iterator[Sample]:
    """A DICOM-WSI instance declaring a matrix, tile or frame count its data does not hold."""
    import pydicom

    lies = {
        "matrix-huge": {"TotalPixelMatrixColumns": 2**31 - 1, "TotalPixelMatrixRows": 2**31 - 1},
        "matrix-0": {"TotalPixelMatrixColumns": 0, "TotalPixelMatrixRows": 0},
        "tile-0": {"Rows": 0, "Columns": 0},
        "frames-huge": {"NumberOfFrames": 10**6},
        "frames-0": {"NumberOfFrames": 0},
        "samples-4": {"SamplesPerPixel": 4},
    }
    for name, fields in lies.items():
        dataset = pydicom.dcmread(io.BytesIO(seed.data))
        for field, value in fields.items():
            setattr(dataset, field, value)
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        yield Sample(f"dicom-lie/{name}", buffer.getvalue(), seed.filename, seed.route)


# --- bombs --------------------------------------------------------------------------------


def _deflated_zeros(size: int) -> bytes:
    """``size`` zero bytes, zlib-compressed without ever holding them."""
    compressor, chunk, out = zlib.compressobj(9), bytes(16 * MIB), bytearray()
    for start in range(0, size, len(chunk)):
        out += compressor.compress(chunk[: min(len(chunk), size - start)])
    return bytes(out + compressor.flush())


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_bomb(side: int) -> bytes:
    """A valid black 1-bit PNG of side x side pixels (a few hundred KB for 30000)."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    rows = _deflated_zeros(side * (1 + -(-side // 8)))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def _tiff_page_bomb(pages: int) -> bytes:
    """A multi-page TIFF of ``pages`` 4096 x 4096 pages sharing one compressed strip."""
    return _shared_strip_tiff(4096, pages)


def _shared_strip_tiff(side: int, pages: int) -> bytes:
    block = _deflated_zeros(side * side)
    head = b"II*\x00" + struct.pack("<I", 8 + len(block)) + block
    ifds = bytearray()
    start = len(head)
    ifd_bytes = 2 + 9 * 12 + 4
    for page in range(pages):
        at = start + page * ifd_bytes
        nxt = at + ifd_bytes if page < pages - 1 else 0
        tags = [
            (256, 4, 1, side),
            (257, 4, 1, side),
            (258, 3, 1, 8),
            (259, 3, 1, 8),
            (262, 3, 1, 1),
            (273, 4, 1, 8),
            (277, 3, 1, 1),
            (278, 4, 1, side),
            (279, 4, 1, len(block)),
        ]
        ifds += struct.pack("<H", len(tags))
        ifds += b"".join(struct.pack("<HHII", *tag) for tag in tags)
        ifds += struct.pack("<I", nxt)
    return head + bytes(ifds)


def bombs(folder: Path) -> Iterator[Sample]:
    """Small files that decode to gigabytes: TIFF (strips, tiles, pages), PNG, zip members."""
    yield Sample("bomb/tiff-strips", bomb_tiff(folder / "b1.tif").read_bytes(), "bomb.svs")
    yield Sample("bomb/tiff-tiles", bomb_tiff(folder / "b2.tif", tile=512).read_bytes(), "b.tif")
    yield Sample("bomb/tiff-20000", _shared_strip_tiff(20_000, 1), "bomb.tif")
    yield Sample("bomb/png-10000", _png_bomb(10_000), "bomb.png")
    yield Sample("bomb/png-30000", _png_bomb(30_000), "bomb.png")
    pages = _tiff_page_bomb(64)
    yield Sample("bomb/tiff-64-pages-of-16M", pages, "scan.tif", "sequences")
    yield Sample("bomb/tiff-64-pages-as-slide", pages, "scan.tif")
    frame = _png_bomb(30_000)
    yield Sample(
        "bomb/frame-png-30000", _zip({"f1.png": frame, "f2.png": frame}), "s.zip", "sequences"
    )


def zip_bombs() -> Iterator[Sample]:
    """High ratio, nested, overlapping members, too many members, sizes that lie."""
    zeros = _streamed_zip("case/slide.tif", 256 * MIB)
    yield Sample("zip-bomb/ratio-256MiB", zeros, "case.zip")
    yield Sample("zip-bomb/ratio-frames", _streamed_zip("f1.png", 256 * MIB), "s.zip", "sequences")
    nested = zeros
    for depth in range(3):
        nested = _zip({f"level{depth}.zip": nested})
    yield Sample("zip-bomb/nested-3", nested, "case.zip")
    yield Sample("zip-bomb/nested-frames", _zip({"inner.zip": zeros}), "s.zip", "sequences")
    yield Sample("zip-bomb/overlapping", _overlapping_zip(2000), "case.zip")
    yield Sample("zip-bomb/overlapping-frames", _overlapping_zip(2000), "s.zip", "sequences")
    many = _zip({f"case/f{k}.txt": b"" for k in range(10_001)})
    yield Sample("zip-bomb/10001-members", many, "case.zip")
    frames = _zip({f"f{k}.png": b"" for k in range(3000)})
    yield Sample("zip-bomb/3000-empty-frames", frames, "s.zip", "sequences")
    yield Sample("zip-lie/size", _size_lie_zip(), "case.zip")
    yield Sample("zip-lie/entries-count", _entries_lie_zip(), "case.zip")


def _streamed_zip(name: str, size: int) -> bytes:
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle,
        bundle.open(name, "w", force_zip64=True) as member,
    ):
        chunk = bytes(16 * MIB)
        for _ in range(size // len(chunk)):
            member.write(chunk)
    return buffer.getvalue()


def _overlapping_zip(copies: int) -> bytes:
    """One member's data referenced by ``copies`` central directory entries (a quoted bomb)."""
    single = _zip({"case/slide.tif": bytes(MIB)})
    directory = single.index(b"PK\x01\x02")
    end = single.index(b"PK\x05\x06")
    entry = single[directory:end]
    entries = b"".join(
        entry.replace(b"case/slide.tif", f"case/s{k:09d}"[:14].encode()) for k in range(copies)
    )
    record = bytearray(single[end:])
    struct.pack_into("<HHI", record, 8, copies, copies, len(entries))
    return single[:directory] + entries + bytes(record)


def _size_lie_zip() -> bytes:
    data = np.random.default_rng(1).integers(0, 256, 3 * MIB, dtype=np.uint8).tobytes()
    raw = bytearray(_zip({"slide.tif": data}))
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        header = raw.index(signature)
        raw[header + size_at : header + size_at + 4] = struct.pack("<I", MIB)
    return bytes(raw)


def _entries_lie_zip() -> bytes:
    raw = bytearray(_zip({"case/slide.tif": b"II*\x00" + bytes(100)}))
    end = raw.index(b"PK\x05\x06")
    struct.pack_into("<HH", raw, end + 8, 0xFFFF, 0xFFFF)
    return bytes(raw)


# --- zip path traversal -------------------------------------------------------------------


def traversals(seed_tiff: bytes, frame: bytes, canary: Path) -> Iterator[Sample]:
    """Zip members that try to write outside their folder, into ``canary`` among others."""
    deep = "../" * 24 + str(canary).lstrip("/")
    for route, payload, name, upload in (
        ("slides", seed_tiff, "slide.tif", "case.zip"),
        ("sequences", frame, "f1.png", "scan.zip"),
    ):
        members = {
            "dotdot": {f"../{name}": payload},
            "deep-dotdot": {f"{deep}/rel-{route}-{name}": payload},
            "absolute": {f"{canary}/abs-{route}-{name}": payload},
            "backslashes": {f"..\\..\\..\\{name}": payload},
            "drive-letter": {f"C:\\temp\\{name}": payload},
            "dot-only": {".": payload, name: payload},
            "file-then-folder": {"case": payload, f"case/{name}": payload},
        }
        for case, entries in members.items():
            made = _zip(entries)
            yield Sample(f"traversal/{route}/{case}", made, upload, route)  # type: ignore[arg-type]
        link = _zip({"link": str(canary).encode(), f"link/{name}": payload}, symlinks=("link",))
        yield Sample(f"traversal/{route}/symlink-folder", link, upload, route)  # type: ignore[arg-type]
        target = _zip({name: b"/etc/passwd"}, symlinks=(name,))
        yield Sample(f"traversal/{route}/symlink-file", target, upload, route)  # type: ignore[arg-type]


# --- polyglots, wrong extensions, names ---------------------------------------------------


def _reoffset_zip(prefix: bytes, archive: bytes) -> bytes:
    """``archive`` after ``prefix``, its offsets moved so that zip readers still find it."""
    raw = bytearray(archive)
    shift = len(prefix)
    entry = raw.index(b"PK\x01\x02")
    while raw[entry : entry + 4] == b"PK\x01\x02":
        (offset,) = struct.unpack_from("<I", raw, entry + 42)
        struct.pack_into("<I", raw, entry + 42, offset + shift)
        names, extra, comment = struct.unpack_from("<HHH", raw, entry + 28)
        entry += 46 + names + extra + comment
    end = raw.rindex(b"PK\x05\x06")
    (directory,) = struct.unpack_from("<I", raw, end + 16)
    struct.pack_into("<I", raw, end + 16, directory + shift)
    return prefix + bytes(raw)


def polyglots(by_name: dict[str, Seed]) -> Iterator[Sample]:
    """Files that are two formats at once."""
    tiff, png, jpeg = by_name["tiff"].data, by_name["png"].data, by_name["jpeg"].data
    slide_zip, frames_zip = by_name["slide-zip"].data, by_name["frames-zip"].data
    yield Sample("polyglot/tiff+zip", tiff + slide_zip, "slide.svs")
    yield Sample("polyglot/tiff+zip-reoffset", _reoffset_zip(tiff, slide_zip), "slide.zip")
    yield Sample("polyglot/zip+tiff", slide_zip + tiff, "case.zip")
    yield Sample("polyglot/png+zip", png + slide_zip, "image.png")
    yield Sample("polyglot/png+zip-reoffset", _reoffset_zip(png, slide_zip), "case.zip")
    yield Sample("polyglot/jpeg+zip", jpeg + slide_zip, "image.jpg")
    yield Sample("polyglot/html+tiff", b"<html><script>alert(1)</script>" + tiff, "slide.tif")
    yield Sample("polyglot/pdf+tiff", b"%PDF-1.4\n%\xe2\xe3\n" + tiff, "slide.pdf")
    mp4 = by_name["mp4"].data
    yield Sample("polyglot/mp4+zip", mp4 + frames_zip, "scan.mp4", "sequences")
    yield Sample("polyglot/zip+mp4", frames_zip + mp4, "scan.zip", "sequences")
    yield Sample(
        "polyglot/tiff-frames+zip", by_name["pages-tiff"].data + frames_zip, "s.tif", "sequences"
    )


WRONG_NAMES = {
    "tiff": ("slide.png", "slide.jpg", "slide.mp4", "slide.zip", "slide.dcm", "slide.mrxs"),
    "png": ("image.tif", "image.svs", "image.ndpi"),
    "jpeg": ("image.png", "image.mrxs", "image.vms"),
    "ome": ("image.png", "image.svs"),
    "dicom": ("level0.tif", "level0.svs", "level0"),
    "slide-zip": ("case.tif", "case.svs", "case.mrxs"),
    "frames-zip": ("scan.tif", "scan.mp4"),
    "pages-tiff": ("scan.zip", "scan.png"),
    "mp4": ("scan.tif", "scan.zip", "scan.png"),
}


def wrong_extensions(seeds_: list[Seed]) -> Iterator[Sample]:
    """Each seed named as another format, and each sent to the other route."""
    for seed in seeds_:
        for name in WRONG_NAMES[seed.name]:
            yield Sample(f"extension/{seed.name}-as-{name}", seed.data, name, seed.route)
        other: Route = "sequences" if seed.route == "slides" else "slides"
        yield Sample(f"route/{seed.name}-to-{other}", seed.data, seed.filename, other)


def names_and_sizes(tiff: bytes, limit_bytes: int) -> Iterator[Sample]:
    """Empty and one-byte files, odd client file names, and a file over the size limit."""
    yield Sample("empty/slide", b"", "empty.tif")
    yield Sample("empty/sequence", b"", "empty.zip", "sequences")
    yield Sample("one-byte", b"I", "one.tif")
    yield Sample("zeros-64k", bytes(65536), "zeros.svs")
    odd = {
        "nul": "sl\x00ide.tif",
        "dotdot": "../../../../etc/passwd.tif",
        "absolute": "/var/lib/slide.tif",
        "windows": "C:\\Users\\x\\slide.svs",
        "long": "s" * 1000 + ".tif",
        "unicode": "sl\u00efde-\u0441\u043b\u0430\u0439\u0434-\u30b9\u30e9\u30a4\u30c9.tif",
        "empty-name": "",
        "dot": ".",
        "newline": "a\nb.tif",
        "quote": 'a";filename="b.tif',
        "extension-only": ".tif",
        "control": "\x01\x02\x7f.tif",
    }
    for case, name in odd.items():
        yield Sample(f"name/{case}", tiff, name)
    yield Sample("over-limit", bytes(limit_bytes + MIB), "large.tif")


def corpus(folder: Path, canary: Path, limit_bytes: int) -> list[Sample]:
    """Every sample, in a fixed order (the same bytes on every run)."""
    made = seeds(folder)
    by_name = {seed.name: seed for seed in made}
    samples: list[Sample] = [Sample(f"seed/{s.name}", s.data, s.filename, s.route) for s in made]
    for seed in made:
        samples += truncations(seed)
        samples += byte_flips(seed)
    for name in ("tiff", "ome", "pages-tiff"):
        samples += tiff_lies(by_name[name])
    samples += png_lies(by_name["png"])
    samples += jpeg_lies(by_name["jpeg"])
    samples += dicom_lies(by_name["dicom"])
    samples += bombs(folder)
    samples += zip_bombs()
    samples += traversals(by_name["tiff"].data, _png_of(_gray_frames()[0]), canary)
    samples += polyglots(by_name)
    samples += wrong_extensions(made)
    samples += names_and_sizes(by_name["tiff"].data, limit_bytes)
    return samples
