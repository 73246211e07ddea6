"""Slides kept open per process for repeated reads, reopened when they fail or change.

OpenSlide's errors are sticky: after one corrupt tile its handle fails every later read, so a
reader whose read failed is dropped and the next caller gets a fresh one (the file may have
been repaired or replaced meanwhile). A file replaced without a failed read is reopened too.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from workers.engine.readers import ReaderLimits, SlideReader, open_slide

CACHED_READERS = 4
FileIdentity = tuple[int, int, int, int]  # device, inode, size, modification time (ns)

_lock = threading.Lock()
_readers: OrderedDict[tuple[str, ReaderLimits], tuple[FileIdentity, SlideReader]] = OrderedDict()


def open_slide_cached(path: str, limits: ReaderLimits) -> SlideReader:
    """The same reader for repeated reads of a slide, unless a read failed or the file changed."""
    key, identity = (path, limits), _identity(path)
    with _lock:
        entry = _readers.pop(key, None)
    if entry is not None and entry[0] == identity and not getattr(entry[1], "failed", False):
        reader = entry[1]
    else:
        reader = open_slide(Path(path), limits)  # a dropped reader closes when unreferenced
    with _lock:
        _readers[key] = (identity, reader)
        while len(_readers) > CACHED_READERS:
            _readers.popitem(last=False)
    return reader


def forget_all() -> None:
    """Drop every cached reader."""
    with _lock:
        _readers.clear()


def _identity(path: str) -> FileIdentity:
    try:
        stat = os.stat(path)
    except OSError:
        return (0, 0, 0, 0)  # open_slide says the file is missing
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
