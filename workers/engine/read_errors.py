"""What reader libraries raise on broken files, said in words a user understands.

Library messages name files by the server's path and speak of their own internals
("list index out of range", "Empty input file"). Every message built here names the file
by its base name only and says what is wrong with the file, not with the reader.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import tifffile

from workers.engine import dicom
from workers.errors import InvalidInput, RestoreError, TooLarge, UnsupportedFormat

# A POSIX path's folders (e.g. "/var/lib/restore/slides/ab12/upload/"); the base name stays.
FOLDERS = re.compile(r"(?<![\w.:/])/(?:[^/\s'\":,;()]+/)+")
TRUNCATION_HINTS = re.compile(
    r"truncat|short read|empty input file|premature end|unexpected end|end of file|"
    r"not enough data|read past",
    re.IGNORECASE,
)
BIGTIFF_VERSION = 43
RE_UPLOAD = "the upload may have been cut short: upload the whole file again"


def without_paths(text: str) -> str:
    """``text`` with every absolute path reduced to its file name."""
    return FOLDERS.sub("", text)


def tiff_truncation(path: Path) -> str | None:
    """Plain words when a TIFF ends before the data its header points to, else None.

    Checks the chain of image directories, their tag values and their tile or strip data
    against the file's size; a file that is not a TIFF, or is complete, gives None.
    """
    size = path.stat().st_size
    needed = 0
    for measure in (_first_directory_needed, _tiff_bytes_needed):
        try:
            needed = max(needed, measure(path))
        except (tifffile.TiffFileError, struct.error, OSError, ValueError, IndexError):
            continue  # damaged in other ways too: the other measure may still tell
    if needed <= size:
        return None
    return (
        f"{path.name} is truncated or damaged: it ends at byte {size:,}, before the data "
        f"its header points to (up to byte {needed:,}); {RE_UPLOAD}"
    )


def check_complete(path: Path) -> None:
    """Refuse a TIFF-based file that ends before the data its header points to.

    Raises:
        InvalidInput: the file is truncated.

    """
    reason = tiff_truncation(path) if looks_like_tiff(path) else None
    if reason:
        raise InvalidInput(reason)


def explain(path: Path, exc: BaseException) -> RestoreError:
    """The domain error a user should see for a library's failure to read ``path``."""
    if isinstance(exc, RestoreError):
        return exc
    if isinstance(exc, MemoryError):
        return TooLarge(f"reading {path.name} needs more memory than readers may use")
    text = without_paths(str(exc)) or type(exc).__name__
    reason = _tiff_or_dicom_reason(path, text)
    if reason is not None:
        return reason
    if TRUNCATION_HINTS.search(text):
        return InvalidInput(
            f"{path.name} is truncated or damaged: the file ends before its image data does "
            f"({text}); {RE_UPLOAD}"
        )
    if isinstance(exc, IndexError | KeyError | struct.error | TypeError | AttributeError):
        text = f"{type(exc).__name__}: {text}"
    return InvalidInput(
        f"{path.name} is damaged or not in the format it claims: its reader failed ({text})"
    )


def _tiff_or_dicom_reason(path: Path, text: str) -> RestoreError | None:
    if not path.is_file():
        return None
    if looks_like_tiff(path):
        truncated = tiff_truncation(path)
        return InvalidInput(truncated) if truncated else None
    if dicom.is_dicom(path):
        not_wsi = dicom.not_whole_slide_reason(path)
        if not_wsi:
            return UnsupportedFormat(not_wsi)
        refusal = dicom.explain_openslide_refusal(path.name, text)
        return UnsupportedFormat(refusal) if refusal else None
    return None


def looks_like_tiff(path: Path) -> bool:
    """Whether the file starts like a classic or Big TIFF."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    return magic[:2] in (b"II", b"MM") and magic[2:4] in (b"*\x00", b"\x00*", b"+\x00", b"\x00+")


def _first_directory_needed(path: Path) -> int:
    """The end of the first image directory, read from the header without a TIFF library.

    A file cut inside its first directory is one tifffile cannot parse at all.
    """
    with path.open("rb") as handle:
        head = handle.read(16)
        order = "<" if head[:2] == b"II" else ">"
        (version,) = struct.unpack(order + "H", head[2:4])
        big = version == BIGTIFF_VERSION
        offset = struct.unpack(order + ("Q" if big else "I"), head[8:16] if big else head[4:8])[0]
        count_format, entry_bytes, pointer_bytes = ("Q", 20, 8) if big else ("H", 12, 4)
        count_bytes = struct.calcsize(count_format)
        handle.seek(offset)
        raw = handle.read(count_bytes)
    if len(raw) < count_bytes:
        return int(offset) + count_bytes
    (count,) = struct.unpack(order + count_format, raw)
    return int(offset) + count_bytes + int(count) * entry_bytes + pointer_bytes


def _tiff_bytes_needed(path: Path) -> int:
    """The furthest byte a TIFF's directories, tag values and image data point to."""
    with tifffile.TiffFile(path) as tif:
        pages = tif.pages
        pages.useframes = False
        needed = 0
        for page in pages:
            needed = max(needed, _page_bytes_needed(page))  # type: ignore[arg-type]
            for sub in getattr(page, "pages", None) or ():
                needed = max(needed, _page_bytes_needed(sub))
        needed = max(needed, _next_directory_needed(tif))
    return needed


def _page_bytes_needed(page: tifffile.TiffPage) -> int:
    needed = page.offset
    for tag in page.tags:
        needed = max(needed, tag.valueoffset + tag.valuebytecount)
    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
        if offset and count:
            needed = max(needed, int(offset) + int(count))
    return needed


def _next_directory_needed(tif: tifffile.TiffFile) -> int:
    """Where the last directory read says the next one is (past the end when cut there)."""
    position = tif.pages.next_page_offset
    offset_size = tif.tiff.offsetsize
    handle = tif.filehandle
    if position is None:
        return 0
    if position + offset_size > handle.size:
        return position + offset_size
    handle.seek(position)
    (offset,) = struct.unpack(tif.tiff.offsetformat, handle.read(offset_size))
    return int(offset) + 1 if offset else 0
