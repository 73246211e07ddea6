"""The readers a job's tasks use: its slide (kept open per process), or a view of it.

A view is the slide degraded (evaluation jobs) or the mosaic of a frame sequence, each
frame where registration placed it.
"""

from __future__ import annotations

import json
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from workers.engine.degraded import DegradedReader, forward_psf
from workers.engine.frames import read_frame
from workers.engine.mosaic import MosaicReader
from workers.engine.reader_cache import open_slide_cached
from workers.engine.readers import ReaderLimits, SlideReader
from workers.engine.tiff_reader import ChannelView, TiffReader
from workers.layout import job_paths, sequence_paths
from workers.settings import Settings
from workers.store import Store


def reader_for(settings: Settings, slide: dict[str, Any]) -> SlideReader:
    """The slide's reader, kept open per worker process."""
    limits = ReaderLimits(
        settings.max_slide_pixels, settings.max_plain_image_pixels, settings.max_pixels_per_byte
    )
    return open_slide_cached(slide["path"], limits)


def job_reader(store: Store, settings: Settings, job: dict[str, Any]) -> SlideReader:
    """What a job restores: its slide, the slide degraded, or a registered frame mosaic."""
    if job["sequence_id"] is not None:
        return mosaic_reader(settings, job)
    reader = reader_for(settings, store.get_slide(job["slide_id"]))
    if job["params"].get("channels") and isinstance(reader, TiffReader):
        return ChannelView(reader)  # fluorescence: every channel restored on its own
    spec = job["params"].get("evaluate")
    if not spec:
        return reader
    return DegradedReader(reader, forward_psf(spec), spec["noise_std"], spec["seed"])


def display_reader(reader: SlideReader) -> SlideReader:
    """What people (and the tissue detector) see of a job's reader: RGB, channels coloured."""
    return reader.source if isinstance(reader, ChannelView) else reader


def mosaic_reader(settings: Settings, job: dict[str, Any]) -> SlideReader:
    """The job's frames placed at their registered positions (one reader per process)."""
    frames = sequence_paths(settings, job["sequence_id"]).frames
    return _mosaic(str(frames), str(job_paths(settings, job["id"]).positions))


@lru_cache(maxsize=8)
def _mosaic(frames: str, positions_file: str) -> MosaicReader:
    solved = json.loads(Path(positions_file).read_text())
    return MosaicReader(
        partial(read_frame, Path(frames)),
        np.asarray(solved["positions"], dtype=np.float64),
        tuple(solved["frame_size"]),
        mpp=solved["pixel_size_um"],
    )


def job_source(store: Store, job: dict[str, Any]) -> dict[str, Any]:
    """The job's input as outputs describe it: file name, checksum, size and pixel size.

    The pixel size is the job's ``mpp`` where it gave one, else the slide's (or sequence's).
    """
    if job["sequence_id"] is None:
        slide = store.get_slide(job["slide_id"])
        mpp = job["params"].get("mpp")  # the job's own, where the file's was unknown or wrong
        if mpp:
            slide["info"] = {**slide["info"], "mpp_x": mpp, "mpp_y": mpp}
        return slide
    sequence = store.get_sequence(job["sequence_id"])
    pixel_size = sequence["metadata"]["pixel_size_um"]
    area = job["params"]["area"]
    return {
        "filename": sequence["filename"],
        "sha256": sequence["sha256"],
        "info": {"width": area[2], "height": area[3], "mpp_x": pixel_size, "mpp_y": pixel_size},
    }
