"""Unpack multi-file slides uploaded as one zip archive.

MRXS with its data folder, or the instances of a DICOM-WSI series (pyramid levels, label,
overview: DICOM files are found by content, as they often have no file name extension).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from workers.engine import dicom
from workers.errors import InvalidInput, TooLarge, UnsupportedFormat

SLIDE_SUFFIXES_IN_ZIP = (".mrxs", ".vms", ".vmu", ".svs", ".ndpi", ".scn", ".tif", ".tiff")


def unpack_slide_zip(archive: Path, destination: Path, max_bytes: int) -> Path:
    """Extract a zip safely and return the slide file inside it.

    Refuses members that escape ``destination`` and archives that expand past ``max_bytes``.
    For a DICOM-WSI series the file returned is its largest instance, beside the others.
    """
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise InvalidInput(f"{archive.name} is not a valid zip archive: {exc}") from exc
    with bundle:
        members = [m for m in bundle.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > max_bytes:
            raise TooLarge("zip archive expands past the upload size limit")
        root = destination.resolve()
        for member in members:
            target = (destination / member.filename).resolve()
            if not target.is_relative_to(root):
                raise InvalidInput(f"zip member {member.filename!r} escapes the archive")
        bundle.extractall(destination)
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
