"""Laser-scan sequences: correct each frame's line shift, restore it, write it on a time axis.

Frames are independent, so a job is batches of frames (its "regions"): each task restores
its frames with the job's chain (``sr-x2`` by default) and writes them, pyramid included,
into the output's time axis; the finish only writes the metadata and the per-frame table.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from typing import Any

import numpy as np

from models.registry import get_model
from workers import jobs
from workers.engine import sharpness, timelapse
from workers.engine.frames import read_frame
from workers.engine.linescan import correct_line_shift, estimate_line_shift
from workers.engine.pipeline import restore_image
from workers.jobs import NextStep
from workers.layout import JobPaths, job_paths, sequence_paths
from workers.sequence_metadata import LASER
from workers.settings import Settings
from workers.store import Store

SHIFT_SAMPLES = 9
FRAME_COLUMNS = [
    "frame", "line_shift_px", "corrected_px", "mean", "seconds",
    *(f"{m}_{when}" for when in ("input", "output") for m in sharpness.MEASURES),
]  # fmt: skip


def is_laser_scan(job: dict[str, Any]) -> bool:
    """Whether a job restores the frames of a laser-scan sequence."""
    return bool((job["params"].get("sequence") or {}).get("mode") == LASER)


def start(store: Store, settings: Settings, job_id: str) -> NextStep:
    """Claim a queued job, estimate the sequence's line shift, create the output."""
    claimed = store.transition(job_id, ("queued",), "running", started_at=time.time())
    job = store.get_job(job_id)
    if not claimed and job["state"] != "running":
        return NextStep("restore", [])
    params, part = job["params"], job["params"]["sequence"]
    models = [get_model(settings.models_dirs, name) for name in params["models"]]
    for model in models:
        model.verify()
    paths = job_paths(settings, job_id)
    paths.root.mkdir(parents=True, exist_ok=True)
    frames = sequence_paths(settings, job["sequence_id"]).frames
    if not paths.line_shift.exists():
        shift = _sequence_line_shift(frames, part["frames"]) if part["bidirectional"] else 0.0
        paths.line_shift.write_text(json.dumps({"line_shift_px": shift}))
    width, height = params["area"][2:]
    scale = params["scale"]
    timelapse.create_time_store(
        paths.partial, part["frames"], width * scale, height * scale, 1, params["chunk_px"]
    )
    store.update_job(
        job_id,
        regions_total=part["batches"],
        tiles_total=part["frames"],
        blocks_total=0,
        model_sha256=models[0].manifest.sha256 if len(models) == 1 else None,
    )
    done = store.done_regions(job_id)
    return NextStep("restore", [i for i in range(part["batches"]) if i not in done], claimed)


def _sequence_line_shift(frames: Any, count: int) -> float:
    """Median line shift of a few frames spread over the sequence (one scanner, one shift)."""
    picks = np.unique(np.linspace(0, count - 1, min(SHIFT_SAMPLES, count)).round().astype(int))
    return float(np.median([estimate_line_shift(_grey(read_frame(frames, i))) for i in picks]))


def _grey(frame: np.ndarray) -> np.ndarray:
    """A frame (rows, cols, channels) uint8 as grey float32 in [0, 1]."""
    return sharpness.grey(frame)


def run_batch(store: Store, settings: Settings, job_id: str, batch: int) -> bool:
    """Restore one batch of frames unless done or cancelled; True when it was the last."""
    job = store.get_job(job_id)
    if job["state"] != "running":
        if job["state"] == "cancelled":
            jobs.discard_partial(settings, job_id)
        return False
    params, part = job["params"], job["params"]["sequence"]
    if batch not in store.done_regions(job_id):
        jobs.begin_attempt(store, settings, job_id, "frames", batch)
        started = time.perf_counter()
        paths = job_paths(settings, job_id)
        shift = json.loads(paths.line_shift.read_text())["line_shift_px"]
        restorer = jobs.restorer_chain(settings, params["models"])
        if job["provider"] is None:
            store.update_job(
                job_id, provider=jobs.onnx_model(settings, params["models"][0]).provider
            )
        frames = sequence_paths(settings, job["sequence_id"]).frames
        first = batch * part["frames_per_task"]
        indices = range(first, min(first + part["frames_per_task"], part["frames"]))
        rows = []
        for done, index in enumerate(indices):
            if store.job_state(job_id) != "running":
                jobs.discard_partial(settings, job_id)
                return False
            rows.append(_restore_frame(paths, params, frames, index, shift, restorer, part))
            store.record_tile_progress(job_id, batch, done + 1)
        paths.frame_rows.mkdir(parents=True, exist_ok=True)
        (paths.frame_rows / f"{batch:06d}.json").write_text(json.dumps(rows))
        seconds = time.perf_counter() - started
        store.mark_region_done(job_id, batch, len(rows), len(rows), seconds)
    return len(store.done_regions(job_id)) == int(part["batches"])


def _restore_frame(
    paths: JobPaths,
    params: dict[str, Any],
    frames: Any,
    index: int,
    shift: float,
    restorer: Any,
    part: dict[str, Any],
) -> dict[str, Any]:
    """Correct, restore and write one frame; return its row of the per-frame table."""
    started = time.perf_counter()
    grey = _grey(read_frame(frames, index))
    measured = estimate_line_shift(grey) if part["bidirectional"] else 0.0
    corrected = correct_line_shift(grey, shift) if shift else grey
    frame = np.clip(corrected * 255 + 0.5, 0, 255).astype(np.uint8)
    out = restore_image(frame, restorer, params["tile_px"], params["halo_px"])
    timelapse.write_frame(paths.partial, index, out)
    before, after = sharpness.measure(frame), sharpness.measure(out)
    return {
        "frame": index,
        "line_shift_px": measured,
        "corrected_px": shift,
        "mean": float(out.mean() / 255),
        "seconds": time.perf_counter() - started,
        **{f"{k}_input": v for k, v in before.as_dict().items()},
        **{f"{k}_output": v for k, v in after.as_dict().items()},
    }


def finish(
    store: Store, settings: Settings, job_id: str, task_id: str, takeover: bool = False
) -> bool:
    """Write the time-axis metadata and per-frame table, publish; False if another task does."""
    if not jobs.claim_finish(store, settings, job_id, task_id, takeover):
        return False
    started = time.perf_counter()
    job = store.get_job(job_id)
    paths = job_paths(settings, job_id)
    params, part = job["params"], job["params"]["sequence"]
    sequence = store.get_sequence(job["sequence_id"])
    rows = _frame_rows(paths)
    if paths.partial.exists():
        timelapse.write_time_metadata(
            paths.partial,
            f"{jobs.output_source(job)} ({jobs.model_label(job)})",
            part["pixel_size_um"] / params["scale"],
            part["frame_interval_s"],
            ["signal"],
            jobs.provenance(job, {**sequence, "info": {}}),
        )
        if paths.output.exists():
            shutil.rmtree(paths.output)
        paths.partial.rename(paths.output)
    elif not paths.output.exists():
        raise RuntimeError(f"job {job_id}: neither a partial nor a finished output exists")
    _write_frame_table(paths, rows)
    finalize_s = time.perf_counter() - started
    store.merge_timings(job_id, finalize_s=finalize_s, regions_s=sum(store.region_seconds(job_id)))
    store.update_job(job_id, metrics=frame_metrics(job, paths, rows, finalize_s))
    store.transition(job_id, ("finalizing",), "completed", finished_at=time.time())
    return True


def _frame_rows(paths: JobPaths) -> list[dict[str, Any]]:
    rows = [
        row
        for path in sorted(paths.frame_rows.glob("*.json"))
        for row in json.loads(path.read_text())
    ]
    return sorted(rows, key=lambda row: row["frame"])


def _write_frame_table(paths: JobPaths, rows: list[dict[str, Any]]) -> None:
    with paths.frame_table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FRAME_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def frame_metrics(
    job: dict[str, Any], paths: JobPaths, rows: list[dict[str, Any]], finalize_s: float
) -> dict[str, Any]:
    """``metrics`` of a laser-scan job: line shift, sharpness before/after, timings."""
    shifts = np.array([row["line_shift_px"] for row in rows] or [0.0])
    wall = time.time() - (job["started_at"] or time.time())
    width, height = job["params"]["area"][2:]
    return {
        "frames": {
            "count": len(rows),
            "line_shift_px": json.loads(paths.line_shift.read_text())["line_shift_px"],
            "line_shift_per_frame_px": {
                "median": float(np.median(shifts)),
                "std": float(shifts.std()),
                "min": float(shifts.min()),
                "max": float(shifts.max()),
            },
        },
        "sharpness": {
            when: {
                m: float(np.median([row[f"{m}_{when}"] for row in rows] or [0.0]))
                for m in sharpness.MEASURES
            }
            for when in ("input", "output")
        },
        "timings": {
            "frames": float(sum(row["seconds"] for row in rows)),
            "finish": finalize_s,
            "wall": wall,
            "mpx_per_s": len(rows) * width * height / 1e6 / wall if wall > 0 else None,
        },
    }
