"""DICOM whole-slide images: recognise Part-10 files, pick a series' file, explain refusals.

OpenSlide reads a DICOM-WSI series when given any one file of it, with the series' other
instances (pyramid levels, label, overview) in the same folder. This module only reads the
128-byte preamble and the file meta group, so it needs no DICOM library.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
PREAMBLE_BYTES = 128
MAGIC = b"DICM"
META_READ_BYTES = 65536
LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR"}
LONG_LENGTH_VRS |= {b"UT", b"UV"}
SOP_CLASS_NAMES = {
    "1.2.840.10008.1.3.10": "a DICOMDIR index",
    "1.2.840.10008.5.1.4.1.1.1": "computed radiography",
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.7": "a secondary capture",
    "1.2.840.10008.5.1.4.1.1.77.1.2": "a VL microscopic image",
    "1.2.840.10008.5.1.4.1.1.77.1.3": "a VL slide-coordinates microscopic image",
    "1.2.840.10008.5.1.4.1.1.88.33": "a structured report",
}

# What OpenSlide says about a DICOM it will not open, in words a user can act on.
OPENSLIDE_REASONS: list[tuple[str, str]] = [
    (
        r"Couldn't get image flavor",
        "its ImageType attribute has no third value (VOLUME, LABEL, OVERVIEW or THUMBNAIL), "
        "so its pyramid levels cannot be told from its other images",
    ),
    (
        r"Unsupported transfer syntax (?P<detail>\S+)",
        "its pixels are encoded with transfer syntax {detail}; uncompressed, JPEG baseline "
        "and JPEG 2000 are read",
    ),
    (
        r"Unsupported photometric interpretation (?P<detail>\S+)",
        "its colour encoding {detail} is not read; RGB, YBR_FULL_422 and YBR_ICT are",
    ),
    (
        r"Attribute (?P<detail>\w+) value",
        "its pixels are not 8-bit RGB ({detail} differs); only 8-bit RGB slides are read",
    ),
    (
        r"No pyramid levels found",
        "it holds no pyramid level (an instance whose ImageType is VOLUME): upload a "
        "level, or a zip of all instances of the series",
    ),
    (
        r"(Missing SOP instance|Found only one SOP instance|Expected \d+ SOP instances)",
        "a pyramid level is split over several instances and some are missing: upload a "
        "zip of all instances of the series",
    ),
]


def is_dicom(path: Path) -> bool:
    """Whether the file is a DICOM Part-10 file (a 128-byte preamble, then ``DICM``)."""
    with path.open("rb") as handle:
        head = handle.read(PREAMBLE_BYTES + len(MAGIC))
    return head[PREAMBLE_BYTES:] == MAGIC


def sop_class_uid(path: Path) -> str | None:
    """The Media Storage SOP Class UID from a Part-10 file's meta group, or None."""
    with path.open("rb") as handle:
        head = handle.read(PREAMBLE_BYTES + len(MAGIC) + META_READ_BYTES)
    if head[PREAMBLE_BYTES : PREAMBLE_BYTES + len(MAGIC)] != MAGIC:
        return None
    position = PREAMBLE_BYTES + len(MAGIC)
    while position + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, position)
        if group != 0x0002:
            return None
        vr = head[position + 4 : position + 6]
        if vr in LONG_LENGTH_VRS:
            (length,) = struct.unpack_from("<I", head, position + 8)
            start = position + 12
        else:
            (length,) = struct.unpack_from("<H", head, position + 6)
            start = position + 8
        if element == 0x0002:
            return head[start : start + length].decode("ascii", "replace").strip("\x00 ")
        position = start + length
    return None


def is_whole_slide(path: Path) -> bool:
    """Whether the file is a DICOM VL Whole Slide Microscopy instance."""
    return sop_class_uid(path) == WSI_SOP_CLASS


def series_file(folder: Path) -> Path | None:
    """The file to open for the DICOM-WSI series unpacked under ``folder``, if any.

    The largest instance is almost always the base pyramid level; OpenSlide finds the
    series' other instances in that file's folder.
    """
    instances = [p for p in folder.rglob("*") if p.is_file() and is_whole_slide(p)]
    if not instances:
        return None
    return max(instances, key=lambda p: (p.stat().st_size, str(p)))


def not_whole_slide_reason(path: Path) -> str | None:
    """Why a DICOM file is not a whole-slide image, or None when it is one (or not DICOM)."""
    uid = sop_class_uid(path)
    if not is_dicom(path) or uid == WSI_SOP_CLASS:
        return None
    what = SOP_CLASS_NAMES.get(uid or "", f"SOP class {uid or 'unknown'}")
    return (
        f"{path.name} is a DICOM file of {what}, not a whole-slide image "
        f"(VL Whole Slide Microscopy Image Storage, {WSI_SOP_CLASS})"
    )


def explain_openslide_refusal(name: str, message: str) -> str | None:
    """Plain words for OpenSlide's refusal of a DICOM-WSI, or None for other errors."""
    for pattern, reason in OPENSLIDE_REASONS:
        found = re.search(pattern, message)
        if found:
            words = reason.format(**found.groupdict())
            return f"{name} is a DICOM whole-slide image this server cannot read: {words}"
    return None
