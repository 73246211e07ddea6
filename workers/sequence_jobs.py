"""Continuous-stage sequences: register neighbouring frames in blocks, then solve positions.

Once every frame has its position the job goes on exactly like a slide job: its reader is
the mosaic of the frames (:func:`workers.job_readers.mosaic_reader`), which the tile grid
cuts into regions, restores (``deblur-motion``), blends and writes as a pyramidal OME-Zarr.
The frames share one motion PSF, so the blur does not bias the registration, and the
mosaic is deblurred once per output pixel rather than once per overlapping frame.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from models.registry import get_model
from workers import jobs
from workers.engine.frames import read_frame
from workers.engine.registration import PairShift, measure_pair, solve_positions
from workers.engine.scan_layout import ScanLayout
from workers.jobs import NextStep
from workers.layout import job_paths, sequence_paths
from workers.sequence_metadata import CONTINUOUS, SequenceMetadata
from workers.sequence_planning import canvas_size, mosaic_params
from workers.settings import Settings
from workers.store import Store

FRAME_CACHE = 8


def needs_registration(settings: Settings, job: dict[str, Any]) -> bool:
    """Whether a job is on a continuous-stage sequence whose frames are not yet placed."""
    sequence = job["params"].get("sequence") or {}
    if sequence.get("mode") != CONTINUOUS:
        return False
    return not job_paths(settings, job["id"]).positions.exists()


def _layout(store: Store, job: dict[str, Any]) -> ScanLayout:
    sequence = store.get_sequence(job["sequence_id"])
    info = sequence["info"]
    return SequenceMetadata.model_validate(sequence["metadata"]).scan_layout(
        (info["width"], info["height"])
    )


def _blocks(params: dict[str, Any]) -> int:
    part = params["sequence"]
    return max(1, math.ceil(int(part["pairs_total"]) / int(part["pairs_per_task"])))


def start_registration(store: Store, settings: Settings, job_id: str) -> NextStep:
    """Claim a queued job and say which blocks of frame pairs are still to register."""
    claimed = store.transition(job_id, ("queued",), "running", started_at=time.time())
    job = store.get_job(job_id)
    if not claimed and job["state"] != "running":
        return NextStep("register", [])
    blocks = _blocks(job["params"])
    store.update_job(job_id, blocks_total=blocks)
    done = store.done_blocks(job_id)
    return NextStep("register", [i for i in range(blocks) if i not in done], claimed)


def register_block(store: Store, settings: Settings, job_id: str, block_index: int) -> bool:
    """Measure the shifts of one block of frame pairs; True when every block is measured."""
    job = store.get_job(job_id)
    if job["state"] != "running":
        return False
    params = job["params"]
    if block_index not in store.done_blocks(job_id):
        jobs.begin_attempt(store, settings, job_id, "pairs", block_index)
        started = time.perf_counter()
        layout = _layout(store, job)
        per_task = params["sequence"]["pairs_per_task"]
        pairs = layout.neighbour_pairs()[block_index * per_task : (block_index + 1) * per_task]
        frames = _FrameCache(sequence_paths(settings, job["sequence_id"]).frames)
        nominal = layout.nominal_positions()
        limit = params["sequence"]["max_correction_px"]
        shifts = [
            measure_pair(frames[i], frames[j], tuple(nominal[j] - nominal[i]), limit, (i, j))
            for i, j in pairs
        ]
        target = job_paths(settings, job_id).registration_block(block_index)
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_json(target, [asdict(s) for s in shifts])
        store.mark_block_done(job_id, block_index, time.perf_counter() - started)
    return len(store.done_blocks(job_id)) == _blocks(params)


def solve(store: Store, settings: Settings, job_id: str) -> None:
    """Place every frame from all measured pairs, and plan the mosaic at its real size."""
    job = store.get_job(job_id)
    paths = job_paths(settings, job_id)
    if paths.positions.exists():
        return
    started = time.perf_counter()
    layout = _layout(store, job)
    shifts = [
        PairShift(**entry)
        for block in range(_blocks(job["params"]))
        for entry in json.loads(paths.registration_block(block).read_text())
    ]
    nominal = layout.nominal_positions()
    positions, residuals = solve_positions(len(nominal), shifts, nominal)
    params = _replanned(store, settings, job, canvas_size(positions, layout.frame_size))
    store.update_job(job_id, params=params)
    _write_json(
        paths.positions,
        {
            "positions": positions.tolist(),
            "frame_size": list(layout.frame_size),
            "pixel_size_um": job["params"]["sequence"]["pixel_size_um"],
            "pairs": [
                {**asdict(s), "residual_px": r} for s, r in zip(shifts, residuals, strict=True)
            ],
            "seconds": time.perf_counter() - started,
        },
    )


def _replanned(
    store: Store, settings: Settings, job: dict[str, Any], size: tuple[int, int]
) -> dict[str, Any]:
    """The job's parameters for the canvas the solved positions span."""
    old = job["params"]
    manifests = [get_model(settings.models_dirs, name).manifest for name in old["models"]]
    fresh = mosaic_params(size, manifests, settings, old["tile_px"])
    kept = {key: old[key] for key in ("hooks", "sequence", "psf") if key in old}
    return {**fresh, **kept}


class _FrameCache:
    """The last few frames read from a frame store (neighbouring pairs share frames)."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.frames: OrderedDict[int, np.ndarray] = OrderedDict()

    def __getitem__(self, index: int) -> np.ndarray:
        if index not in self.frames:
            self.frames[index] = read_frame(self.store, index)
            if len(self.frames) > FRAME_CACHE:
                self.frames.popitem(last=False)
        self.frames.move_to_end(index)
        return self.frames[index]


def _write_json(path: Path, value: Any) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(value))
    partial.replace(path)
