"""Job orchestration: what each task does with the store and the engine, free of Celery."""

from __future__ import annotations

import shutil
import time
from typing import Any

from models.registry import get_model
from workers.engine import omezarr, pipeline
from workers.engine.readers import ReaderLimits, SlideReader, open_slide_cached
from workers.engine.tissue import TissueMap
from workers.layout import job_paths
from workers.planning import grid_from_params
from workers.settings import Settings
from workers.store import ACTIVE_STATES, Store

SOFTWARE = "slide-restore 0.1.0"


def reader_for(settings: Settings, slide: dict[str, Any]) -> SlideReader:
    """The slide's reader, kept open per worker process."""
    limits = ReaderLimits(settings.max_slide_pixels, settings.max_plain_image_pixels)
    return open_slide_cached(slide["path"], limits)


def _model(settings: Settings, name: str) -> Any:
    from models.runtime import load_model

    return load_model(
        get_model(settings.models_dirs, name), settings.ort_providers, settings.ort_threads
    )


def start(store: Store, settings: Settings, job_id: str) -> list[int]:
    """Claim a queued job, prepare its output and tissue map; return regions still to do."""
    claimed = store.transition(job_id, ("queued",), "running", started_at=time.time())
    job = store.get_job(job_id)
    if not claimed and job["state"] != "running":
        return []
    started = time.perf_counter()
    slide = store.get_slide(job["slide_id"])
    model = get_model(settings.models_dirs, job["model"])
    model.verify()
    reader = reader_for(settings, slide)
    params = job["params"]
    grid = grid_from_params(params)
    paths = job_paths(settings, job_id)
    paths.root.mkdir(parents=True, exist_ok=True)
    if params["skip_background"] and not paths.tissue.exists():
        pipeline.make_tissue_map(reader).save(paths.tissue)
    out = grid.output_box(grid.area)
    omezarr.create_store(paths.partial, out.width, out.height, params["chunk_px"])
    store.update_job(
        job_id,
        regions_total=len(grid.regions),
        tiles_total=len(grid.tiles),
        model_sha256=model.manifest.sha256,
    )
    store.merge_timings(job_id, plan_s=time.perf_counter() - started)
    done = store.done_regions(job_id)
    return [i for i in range(len(grid.regions)) if i not in done]


def run_region(store: Store, settings: Settings, job_id: str, region_index: int) -> bool:
    """Restore one region unless done or cancelled; True when this completed the last one."""
    job = store.get_job(job_id)
    if job["state"] != "running":
        if job["state"] == "cancelled":
            discard_partial(settings, job_id)
        return False
    grid = grid_from_params(job["params"])
    if region_index not in store.done_regions(job_id):
        paths = job_paths(settings, job_id)
        tissue = TissueMap.load(paths.tissue) if paths.tissue.exists() else None
        model = _model(settings, job["model"])
        if job["provider"] is None:
            store.update_job(job_id, provider=model.provider)
        try:
            result = pipeline.restore_region(
                reader_for(settings, store.get_slide(job["slide_id"])),
                model,
                grid,
                region_index,
                paths.partial,
                tissue,
                settings.tile_batch,
                should_stop=lambda: store.job_state(job_id) != "running",
            )
        except pipeline.JobCancelled:
            discard_partial(settings, job_id)
            return False
        store.mark_region_done(
            job_id,
            region_index,
            grid.owned_tile_count(region_index),
            result.tiles_restored,
            result.seconds,
        )
    return len(store.done_regions(job_id)) == len(grid.regions)


def ready_to_finish(store: Store, job_id: str) -> bool:
    """Whether a running job has all its regions written."""
    job = store.get_job(job_id)
    return bool(job["state"] == "running" and 0 < job["regions_total"] == job["regions_done"])


def finish(
    store: Store, settings: Settings, job_id: str, task_id: str, takeover: bool = False
) -> bool:
    """Build the pyramid and publish the output; False when another task already does.

    The claim records ``task_id``: the same task redelivered after its worker died carries
    on, a duplicate finish backs off. ``takeover`` (an embedded worker resuming at start-up)
    or a claim older than the task time limit also carries on.
    """
    claim = {"finalizer": task_id, "finalizer_at": time.time()}
    if not store.transition(job_id, ("running",), "finalizing", **claim):
        job = store.get_job(job_id)
        stale = time.time() - (job["finalizer_at"] or 0) > settings.task_time_limit_s
        mine = job["finalizer"] == task_id
        if not (job["state"] == "finalizing" and (mine or stale or takeover)):
            return False
        store.update_job(job_id, **claim)
    started = time.perf_counter()
    job = store.get_job(job_id)
    slide = store.get_slide(job["slide_id"])
    paths = job_paths(settings, job_id)
    if paths.partial.exists():
        pipeline.finish_output(
            paths.partial,
            paths.output,
            f"{slide['filename']} ({job['model']})",
            _output_mpp(slide["info"], job["params"]["scale"]),
            _provenance(job, slide),
            job["params"]["chunk_px"],
        )
    elif not paths.output.exists():
        raise RuntimeError(f"job {job_id}: neither a partial nor a finished output exists")
    region_seconds = sum(store.region_seconds(job_id))
    store.merge_timings(job_id, finalize_s=time.perf_counter() - started, regions_s=region_seconds)
    store.transition(job_id, ("finalizing",), "completed", finished_at=time.time())
    return True


def _output_mpp(info: dict[str, Any], scale: int) -> tuple[float | None, float | None]:
    """Microns per output pixel: the slide's, divided by the model's scale."""
    return (
        info["mpp_x"] / scale if info["mpp_x"] else None,
        info["mpp_y"] / scale if info["mpp_y"] else None,
    )


def _provenance(job: dict[str, Any], slide: dict[str, Any]) -> dict[str, Any]:
    """What the output records about how it was made."""
    return {
        "job_id": job["id"],
        "software": SOFTWARE,
        "model": job["model"],
        "model_sha256": job["model_sha256"],
        "provider": job["provider"],
        "source": {
            "filename": slide["filename"],
            "sha256": slide["sha256"],
            "area": job["params"]["area"],
        },
        "params": job["params"],
    }


def unfinished_jobs(store: Store) -> list[tuple[str, str]]:
    """(job id, state) of every job that was queued, running or finalizing."""
    return [
        (job["id"], job["state"])
        for job in store.list_jobs(limit=10_000)
        if job["state"] in ACTIVE_STATES
    ]


def fail(store: Store, settings: Settings, job_id: str, message: str) -> None:
    """Mark an active job failed and drop its partial output."""
    if store.transition(job_id, ACTIVE_STATES, "failed", error=message, finished_at=time.time()):
        discard_partial(settings, job_id)


def discard_partial(settings: Settings, job_id: str) -> None:
    """Remove an unfinished output (cancelled or failed job)."""
    shutil.rmtree(job_paths(settings, job_id).partial, ignore_errors=True)
