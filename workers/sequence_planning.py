"""Turn a job request on a frame sequence into the parameters its tasks recompute from."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.manifest import ModelManifest
from workers.errors import InvalidInput
from workers.planning import plan_params
from workers.sequence_metadata import CONTINUOUS, LASER, SequenceMetadata
from workers.settings import Settings

AUTO_MODELS = {CONTINUOUS: ["deblur-motion"], LASER: ["sr-x2"]}
MOTION_MODEL, MOTION_MAX_PX = "deblur-motion", 30.0  # its training range: box PSFs of 3-30 px


def sequence_models(mode: str, model: str | list[str]) -> tuple[list[str], bool]:
    """The chain a sequence job runs, and whether it was chosen by ``auto``."""
    if model == "auto":
        return AUTO_MODELS[mode], True
    chain = [model] if isinstance(model, str) else list(model)
    if not chain or "auto" in chain:
        raise InvalidInput("model must be 'auto', a model name, or a non-empty chain of names")
    return chain, False


def plan_sequence(
    sequence: dict[str, Any],
    manifests: list[ModelManifest],
    settings: Settings,
    auto: bool,
    tile_px: int | None = None,
) -> dict[str, Any]:
    """A job's parameters on a sequence: a mosaic (continuous-stage) or frames (laser-scan)."""
    meta = SequenceMetadata.model_validate(sequence["metadata"])
    names = [m.name for m in manifests]
    blur = meta.motion_blur_px
    if MOTION_MODEL in names and blur is not None and blur > MOTION_MAX_PX:
        raise InvalidInput(
            f"the frames carry {blur:.1f} px of motion blur (stage speed x exposure / pixel "
            f"size), beyond the {MOTION_MAX_PX:.0f} px that {MOTION_MODEL} was trained for"
        )
    info = sequence["info"]
    frame_size = (info["width"], info["height"])
    if meta.mode == CONTINUOUS:
        return _plan_mosaic(meta, frame_size, manifests, settings, auto, tile_px)
    return _plan_frames(meta, info["count"], frame_size, manifests, settings, auto)


def _sequence_part(meta: SequenceMetadata, auto: bool) -> dict[str, Any]:
    return {
        "mode": meta.mode,
        "auto": auto,
        "pixel_size_um": meta.pixel_size_um,
        "motion_blur_px": meta.motion_blur_px,
        "frame_interval_s": meta.frame_interval_s,
    }


def _plan_mosaic(
    meta: SequenceMetadata,
    frame_size: tuple[int, int],
    manifests: list[ModelManifest],
    settings: Settings,
    auto: bool,
    tile_px: int | None,
) -> dict[str, Any]:
    """The mosaic's parameters at the nominal frame positions (re-planned after registration)."""
    layout = meta.scan_layout(frame_size)
    nominal = layout.nominal_positions()
    params = mosaic_params(canvas_size(nominal, frame_size), manifests, settings, tile_px)
    pairs = len(layout.neighbour_pairs())
    if meta.motion_blur_px is not None:  # every frame's PSF: a box along the scan axis
        params["psf"] = [meta.motion_blur_px, 1.0 if meta.scan_axis == "x" else 0.0]
    params["sequence"] = {
        **_sequence_part(meta, auto),
        "pairs_total": pairs,
        "pairs_per_task": settings.sequence_pairs_per_task,
        "max_correction_px": 0.25 * min(frame_size),
    }
    return params


def mosaic_params(
    size: tuple[int, int],
    manifests: list[ModelManifest],
    settings: Settings,
    tile_px: int | None,
) -> dict[str, Any]:
    """The slide pipeline's parameters for a mosaic of ``size`` (width, height)."""
    return plan_params(size, manifests, settings, tile_px=tile_px)


def canvas_size(positions: np.ndarray, frame_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the bounding box of frames placed at rounded ``positions``."""
    placed = np.round(positions)
    extent = placed.max(axis=0) - placed.min(axis=0)
    return int(extent[0]) + frame_size[0], int(extent[1]) + frame_size[1]


def _plan_frames(
    meta: SequenceMetadata,
    count: int,
    frame_size: tuple[int, int],
    manifests: list[ModelManifest],
    settings: Settings,
    auto: bool,
) -> dict[str, Any]:
    """Every frame restored on its own, written on a time axis."""
    if any(m.scale != 1 for m in manifests[:-1]):
        raise InvalidInput("only the last model of a chain may change the image size")
    per_task = settings.sequence_frames_per_task
    return {
        "area": [0, 0, *frame_size],
        "tile_px": min(m.tile_px for m in manifests),
        "halo_px": max(m.halo_px for m in manifests),
        "scale": manifests[-1].scale,
        "chunk_px": settings.chunk_px,
        "skip_background": False,
        "auto": False,
        "classify": False,
        "min_confidence": 0.0,
        "models": [m.name for m in manifests],
        "hooks": [],
        "sequence": {
            **_sequence_part(meta, auto),
            "frames": count,
            "frames_per_task": per_task,
            "batches": math.ceil(count / per_task),
            "bidirectional": bool(meta.bidirectional),
        },
    }
