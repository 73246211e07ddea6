"""Unpack multi-file slides uploaded as one zip archive.

MRXS with its data folder, or the instances of a DICOM-WSI series (pyramid levels, label,
overview: DICOM files are found by content, as they often have no file name extension).

An upload is a zip only if it is one from its first byte to its last: ``zipfile`` finds an
archive by its directory at the end, so a TIFF with a zip appended (a polyglot) would pass
``zipfile.is_zipfile`` and be read as the image inside the zip. Extraction is bounded twice:
by the sizes the archive declares (their sum and each member's compression ratio, checked
before anything is written) and by the bytes actually written, counted while writing.
"""

from __future__ import annotations

import lzma
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from workers.engine import dicom
from workers.errors import InvalidInput, TooLarge, UnsupportedFormat

SLIDE_SUFFIXES_IN_ZIP = (".mrxs", ".vms", ".vmu", ".svs", ".ndpi", ".scn", ".tif", ".tiff")
LOCAL_HEADER = b"PK\x03\x04"
END_RECORD = b"PK\x05\x06"
END_RECORD_BYTES = 22
LOCAL_HEADER_FORMAT = "<4s22xHH"  # signature ... file name length, extra field length
MAX_DESCRIPTOR_BYTES = 24  # data descriptor after a member's data: signature, CRC, zip64 sizes
MAX_MEMBERS = 10_000
MAX_RATIO = 200.0  # deflate of image data rarely passes 10; a zip bomb is near 1000
RATIO_FLOOR_BYTES = 2**20  # smaller members (index and text files) may compress as they like
COPY_BYTES = 2**20
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,
    RuntimeError,
)


def is_zip_upload(path: Path) -> bool:
    """Whether an upload is meant as a zip: it starts with a member's local header.

    A file that starts like a TIFF (or anything else) is not a zip, whatever it ends with.
    """
    with path.open("rb") as handle:
        return handle.read(4) == LOCAL_HEADER


def unpack_slide_zip(
    archive: Path, destination: Path, max_bytes: int, max_ratio: float = MAX_RATIO
) -> Path:
    """Extract a zip safely and return the slide file inside it.

    Refuses archives with data outside their members, members that escape ``destination``,
    archives that declare more than ``max_bytes`` or a member that expands more than
    ``max_ratio``-fold (a zip bomb), all before writing; and stops writing past the sizes
    declared. For a DICOM-WSI series the file returned is its largest instance.
    """
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidInput(f"{archive.name} is not a valid zip archive: {exc}") from exc
    with bundle:
        members = _checked_members(archive, bundle, destination, max_bytes, max_ratio)
        written = 0
        for member in members:
            written += _extract(bundle, member, destination, max_bytes - written)
    return _slide_in(archive, destination)


def _checked_members(
    archive: Path, bundle: zipfile.ZipFile, destination: Path, max_bytes: int, max_ratio: float
) -> list[zipfile.ZipInfo]:
    """The file members, once the archive's structure and declared sizes pass."""
    infos = bundle.infolist()
    if len(infos) > MAX_MEMBERS:
        raise TooLarge(f"{archive.name} holds {len(infos)} members, more than {MAX_MEMBERS}")
    check_whole_file(archive, bundle)
    members = [m for m in infos if not m.is_dir()]
    root = destination.resolve()
    for member in members:
        if not (destination / member.filename).resolve().is_relative_to(root):
            raise InvalidInput(f"zip member {member.filename!r} escapes the archive")
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_FLOOR_BYTES and ratio > max_ratio:
            raise TooLarge(
                f"zip member {member.filename!r} expands {ratio:,.0f}-fold "
                f"({member.compress_size:,} to {member.file_size:,} bytes; at most "
                f"{max_ratio:g}-fold is accepted): a zip bomb"
            )
    declared = sum(m.file_size for m in members)
    if declared > max_bytes:
        raise TooLarge(
            f"zip archive expands to {declared:,} bytes, past the limit of {max_bytes:,} bytes"
        )
    return members


def check_whole_file(archive: Path, bundle: zipfile.ZipFile) -> None:
    """Refuse a zip with bytes its directory does not account for.

    Its members must follow one another from byte 0 to the central directory, and the end
    record (with its comment) must end the file: nothing before, between or after.
    """
    end_record = archive.stat().st_size - END_RECORD_BYTES - len(bundle.comment)
    position = 0
    with archive.open("rb") as handle:
        handle.seek(max(end_record, 0))
        if end_record < 0 or handle.read(4) != END_RECORD:
            raise InvalidInput(f"{archive.name} has data after the end of its zip archive")
        for member in sorted(bundle.infolist(), key=lambda m: m.header_offset):
            if not _follows(position, member.header_offset):
                raise _unaccounted(archive, position)
            position = _member_end(archive, handle, member)
    if not _follows(position, int(getattr(bundle, "start_dir", -1))):
        raise _unaccounted(archive, position)


def _follows(end: int, start: int) -> bool:
    """Whether ``start`` comes right after ``end``, allowing for a data descriptor."""
    return end <= start <= end + MAX_DESCRIPTOR_BYTES


def _unaccounted(archive: Path, position: int) -> InvalidInput:
    return InvalidInput(
        f"{archive.name} holds data its zip directory does not account for (at byte "
        f"{position:,}): it is not a plain zip archive"
    )


def _member_end(archive: Path, handle: BinaryIO, member: zipfile.ZipInfo) -> int:
    """Where a member's compressed data ends (before any data descriptor)."""
    handle.seek(member.header_offset)
    head = handle.read(struct.calcsize(LOCAL_HEADER_FORMAT))
    if len(head) < struct.calcsize(LOCAL_HEADER_FORMAT) or head[:4] != LOCAL_HEADER:
        raise _unaccounted(archive, member.header_offset)
    _, name_bytes, extra_bytes = struct.unpack(LOCAL_HEADER_FORMAT, head)
    return int(member.header_offset + len(head) + name_bytes + extra_bytes + member.compress_size)


def _extract(
    bundle: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path, budget: int
) -> int:
    """Write one member, counting the bytes; returns how many were written."""
    target = destination / member.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with bundle.open(member) as source, target.open("wb") as out:
            while chunk := source.read(COPY_BYTES):
                written += len(chunk)
                if written > member.file_size or written > budget:
                    raise TooLarge(
                        f"zip member {member.filename!r} expands past its declared size "
                        "or the archive's limit"
                    )
                out.write(chunk)
    except ZIP_ERRORS as exc:
        raise InvalidInput(f"zip member {member.filename!r} cannot be extracted: {exc}") from exc
    return written


def _slide_in(archive: Path, destination: Path) -> Path:
    slides = sorted(p for p in destination.rglob("*") if p.suffix.lower() in SLIDE_SUFFIXES_IN_ZIP)
    if slides:
        return min(slides, key=lambda p: (p.suffix.lower() != ".mrxs", len(p.parts)))
    series = dicom.series_file(destination)
    if series is not None:
        return series
    raise UnsupportedFormat(
        f"{archive.name} holds no slide (.mrxs, .svs, .ndpi, .tif, ..., or the DICOM "
        "instances of a whole-slide image series)"
    )
