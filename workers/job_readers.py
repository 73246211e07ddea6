"""The readers a job's tasks use: its slide, kept open per process, or the slide degraded."""

from __future__ import annotations

from typing import Any

from workers.engine.degraded import DegradedReader, forward_psf
from workers.engine.readers import ReaderLimits, SlideReader, open_slide_cached
from workers.settings import Settings
from workers.store import Store


def reader_for(settings: Settings, slide: dict[str, Any]) -> SlideReader:
    """The slide's reader, kept open per worker process."""
    limits = ReaderLimits(settings.max_slide_pixels, settings.max_plain_image_pixels)
    return open_slide_cached(slide["path"], limits)


def job_reader(store: Store, settings: Settings, job: dict[str, Any]) -> SlideReader:
    """What a job restores: its slide, or for an evaluation job the slide degraded."""
    reader = reader_for(settings, store.get_slide(job["slide_id"]))
    spec = job["params"].get("evaluate")
    if not spec:
        return reader
    return DegradedReader(reader, forward_psf(spec), spec["noise_std"], spec["seed"])
