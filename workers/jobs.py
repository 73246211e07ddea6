"""Job orchestration: what each task does with the store and the engine, free of Celery."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from models.registry import get_model
from workers import job_hooks, job_results, tile_table
from workers.engine import omezarr, pipeline
from workers.engine.blurmap import BlurMap
from workers.engine.classification import BlockFeatures, assemble_features, classify_block
from workers.engine.motion_psf import with_motion_psfs
from workers.engine.routing import RoutedPlan, RoutingRules, TileDecision, decide_cells, decide_tile
from workers.engine.tiling import TileGrid
from workers.engine.tissue import TissueMap
from workers.errors import GaveUp
from workers.job_readers import display_reader, job_reader, job_source
from workers.layout import JobPaths, job_paths
from workers.planning import CLASSIFIER, cells_from_params, grid_from_params
from workers.settings import Settings
from workers.store import ACTIVE_STATES, Store
from workers.tile_table import tile_rows

SOFTWARE = "slide-restore 0.1.0"


def onnx_model(settings: Settings, name: str, psf: tuple[float, float] | None = None) -> Any:
    """An installed model loaded in ONNX Runtime (one session per process).

    ``psf`` (length px, 1.0 along x), where known, runs a model's known-PSF graph.
    """
    from models.runtime import load_model

    model = get_model(settings.models_dirs, name)
    return load_model(model, settings.ort_providers, settings.resolved_ort_threads, psf)


def _classifier(settings: Settings) -> Any:
    from models.runtime import OnnxClassifier

    return OnnxClassifier(onnx_model(settings, CLASSIFIER))


@dataclass(frozen=True)
class NextStep:
    """What a job does next: classify blocks of cells, register frame pairs, or restore."""

    phase: Literal["classify", "register", "restore"]
    todo: list[int]
    claimed: bool = False  # this call started the job (queued -> running)


def start(store: Store, settings: Settings, job_id: str) -> NextStep:
    """Claim a queued job, prepare its output and tissue map; say what is still to do."""
    claimed = store.transition(job_id, ("queued",), "running", started_at=time.time())
    job = store.get_job(job_id)
    if not claimed and job["state"] != "running":
        return NextStep("restore", [])
    started = time.perf_counter()
    params = job["params"]
    models = [get_model(settings.models_dirs, name) for name in params["models"]]
    for model in models:
        model.verify()
    reader = job_reader(store, settings, job)
    grid = grid_from_params(params)
    paths = job_paths(settings, job_id)
    paths.root.mkdir(parents=True, exist_ok=True)
    if params["skip_background"] and not paths.tissue.exists():
        pipeline.make_tissue_map(display_reader(reader)).save(paths.tissue)
    out = grid.output_box(grid.area)
    channels = len(params.get("channels") or ()) or 3
    omezarr.create_store(paths.partial, out.width, out.height, params["chunk_px"], channels)
    blocks = len(cells_from_params(params).blocks) if params["classify"] else job["blocks_total"]
    store.update_job(
        job_id,
        regions_total=len(grid.regions),
        tiles_total=len(grid.tiles),
        blocks_total=blocks,
        model_sha256=models[0].manifest.sha256 if len(models) == 1 else None,
    )
    store.merge_timings(job_id, plan_s=time.perf_counter() - started)
    if params["classify"] and not paths.blur_map.exists():
        done = store.done_blocks(job_id)
        todo = [i for i in range(blocks) if i not in done]
        if todo:
            return NextStep("classify", todo, claimed)
        return NextStep("restore", route(store, settings, job_id), claimed)
    return NextStep("restore", _regions_todo(store, job_id, len(grid.regions)), claimed)


def begin_attempt(store: Store, settings: Settings, job_id: str, task: str, item: int) -> None:
    """Count a task's start on ``item``; give up once it has stopped its worker too often.

    A task that finishes, even with an error, is not retried by the broker; one that is
    redelivered again and again was killed with its worker each time (a crash, memory).
    """
    attempts = store.count_attempt(job_id, task, item)
    if attempts > settings.max_task_attempts:
        raise GaveUp(
            f"{task} {item} stopped its worker {attempts - 1} times (a crash or running out "
            "of memory); the job gives up rather than retry forever"
        )


def _regions_todo(store: Store, job_id: str, total: int) -> list[int]:
    done = store.done_regions(job_id)
    return [i for i in range(total) if i not in done]


def run_block(store: Store, settings: Settings, job_id: str, block_index: int) -> bool:
    """Classify one block of cells unless done; True when every block is classified."""
    job = store.get_job(job_id)
    if job["state"] != "running":
        return False
    params = job["params"]
    cells = cells_from_params(params)
    if block_index not in store.done_blocks(job_id):
        begin_attempt(store, settings, job_id, "block", block_index)
        started = time.perf_counter()
        paths = job_paths(settings, job_id)
        tissue = TissueMap.load(paths.tissue) if paths.tissue.exists() else None
        features = classify_block(
            job_reader(store, settings, job),
            _classifier(settings),
            cells,
            block_index,
            tissue,
            copy_into=paths.partial if params["auto"] else None,
            levels=params.get("region_levels", 1),
        )
        paths.blur_features.mkdir(parents=True, exist_ok=True)
        features.save(paths.block_features(block_index))
        store.mark_block_done(job_id, block_index, time.perf_counter() - started)
    return len(store.done_blocks(job_id)) == len(cells.blocks)


def route(store: Store, settings: Settings, job_id: str) -> list[int]:
    """Decide every cell's blur class from all blocks; return the regions still to do."""
    job = store.get_job(job_id)
    params = job["params"]
    paths = job_paths(settings, job_id)
    if not paths.blur_map.exists():
        cells = cells_from_params(params)
        features = assemble_features(
            cells, [BlockFeatures.load(paths.block_features(i)) for i in range(len(cells.blocks))]
        )
        partial = paths.features.with_suffix(".partial.npy")
        np.save(partial, features)
        partial.replace(paths.features)
        rules = RoutingRules(min_confidence=params["min_confidence"])
        blur_map = decide_cells(features, rules)
        if params["auto"]:  # routing hands deblur-motion each motion patch's PSF
            blur_map = with_motion_psfs(blur_map, job_reader(store, settings, job), cells)
        blur_map.save(paths.blur_map)
    return _regions_todo(store, job_id, len(grid_from_params(params).regions))


def run_region(store: Store, settings: Settings, job_id: str, region_index: int) -> bool:
    """Restore one region unless done or cancelled; True when this completed the last one."""
    job = store.get_job(job_id)
    if job["state"] != "running":
        if job["state"] == "cancelled":
            discard_partial(settings, job_id)
        return False
    params = job["params"]
    grid = grid_from_params(params)
    if region_index not in store.done_regions(job_id):
        begin_attempt(store, settings, job_id, "region", region_index)
        paths = job_paths(settings, job_id)
        blur_map = BlurMap.load(paths.blur_map) if params["classify"] else None
        decisions = _decisions(blur_map, params, grid, region_index)
        plan = _plan(settings, paths, params, blur_map, decisions)
        if job["provider"] is None:
            store.update_job(job_id, provider=onnx_model(settings, params["models"][0]).provider)
        try:
            result = pipeline.restore_region(
                job_reader(store, settings, job),
                plan,
                grid,
                region_index,
                paths.partial,
                settings.tile_batch,
                settings.tile_batch_px,
                should_stop=lambda: store.job_state(job_id) != "running",
                levels=params.get("region_levels", 1),
                progress=_throttled(
                    lambda done: store.record_tile_progress(job_id, region_index, done)
                ),
            )
        except pipeline.JobCancelled:
            discard_partial(settings, job_id)
            return False
        rows = tile_rows(grid, params, decisions, result.tiles, _features(paths))
        tile_table.write_region(paths.tile_rows, region_index, result.stages, rows)
        store.mark_region_done(
            job_id,
            region_index,
            len(grid.tiles_of(region_index)),
            result.tiles_restored,
            result.seconds,
        )
    return len(store.done_regions(job_id)) == len(grid.regions)


def _throttled(report: Callable[[int], None], every_s: float = 1.0) -> Callable[[int], None]:
    """``report``, called at most once per ``every_s`` (the first call always)."""
    last = [-every_s]

    def call(value: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            report(value)

    return call


def _decisions(
    blur_map: BlurMap | None, params: dict[str, Any], grid: TileGrid, region_index: int
) -> dict[int, TileDecision] | None:
    """Routing's decision for each tile of the region, when the job has a blur map."""
    if blur_map is None:
        return None
    cells = cells_from_params(params)
    rules = RoutingRules(min_confidence=params["min_confidence"])
    tiles = grid.tiles_of(region_index)
    return {t.index: decide_tile(blur_map, cells, t.core, rules) for t in tiles}


def _plan(
    settings: Settings,
    paths: JobPaths,
    params: dict[str, Any],
    blur_map: BlurMap | None,
    decisions: dict[int, TileDecision] | None,
) -> pipeline.TilePlan:
    """Routed restorers for ``auto``, else the job's chain on every tissue tile."""
    if params["auto"] and blur_map is not None and decisions is not None:
        keys = {d.restorer_key for d in decisions.values() if d.route}
        restorers = {key: restorer_chain(settings, list(key[0]), key[1]) for key in keys}
        rules = RoutingRules(min_confidence=params["min_confidence"])
        cells = cells_from_params(params)
        return RoutedPlan(decisions, restorers, blur_map, cells, rules, input_in_output=True)
    tissue = TissueMap.load(paths.tissue) if paths.tissue.exists() else None
    psf = params.get("psf")
    chain = restorer_chain(settings, params["models"], tuple(psf) if psf else None)
    return pipeline.UniformPlan(chain, tissue)


def restorer_chain(
    settings: Settings, names: list[str], psf: tuple[float, float] | None = None
) -> pipeline.Restorer:
    """The named models run one after the other (told ``psf`` where they take one)."""
    models = [onnx_model(settings, name, psf) for name in names]
    return models[0] if len(models) == 1 else pipeline.Chain(models)


def _features(paths: JobPaths) -> np.ndarray | None:
    return np.load(paths.features) if paths.features.exists() else None


def ready_to_finish(store: Store, job_id: str) -> bool:
    """Whether a running job has all its regions written and its hooks run."""
    job = store.get_job(job_id)
    written = 0 < job["regions_total"] == job["regions_done"]
    return bool(job["state"] == "running" and written and not job_hooks.todo(store, job_id))


def finish(
    store: Store, settings: Settings, job_id: str, task_id: str, takeover: bool = False
) -> bool:
    """Build the pyramid and publish the output; False when another task already does.

    The claim records ``task_id``: the same task redelivered after its worker died carries
    on, a duplicate finish backs off. ``takeover`` (an embedded worker resuming at start-up)
    or a claim older than the task time limit also carries on.
    """
    if not claim_finish(store, settings, job_id, task_id, takeover):
        return False
    started = time.perf_counter()
    job = store.get_job(job_id)
    slide = job_source(store, job)
    paths = job_paths(settings, job_id)
    mpp = _output_mpp(slide["info"], job["params"]["scale"])
    renew = _throttled(lambda _: store.touch_job(job_id), every_s=10.0)  # the job's lease
    if paths.partial.exists():
        job_results.write_blur_labels(paths, job["params"], slide["info"])
        job_hooks.write_density_labels(paths, job["params"], slide["info"])
        pipeline.finish_output(
            paths.partial,
            paths.output,
            f"{output_source(job)} ({model_label(job)})",
            mpp,
            provenance(job, slide),
            job["params"]["chunk_px"],
            job["params"].get("region_levels", 1),
            progress=lambda: renew(0),
            channels=job["params"].get("channels"),
        )
    elif not paths.output.exists():
        raise RuntimeError(f"job {job_id}: neither a partial nor a finished output exists")
    finalize_s = time.perf_counter() - started
    region_seconds = sum(store.region_seconds(job_id))
    classify_seconds = sum(store.block_seconds(job_id))
    store.merge_timings(
        job_id, finalize_s=finalize_s, regions_s=region_seconds, classify_s=classify_seconds
    )
    hook_results, hook_columns = job_hooks.reduce(paths, job["params"])
    tile_table.write_csv(paths.tile_rows, paths.tile_table, hook_columns)
    store.update_job(
        job_id,
        metrics=job_results.job_metrics(store, settings, job_id, paths, finalize_s),
        hooks=hook_results or None,
    )
    store.transition(job_id, ("finalizing",), "completed", finished_at=time.time())
    return True


def claim_finish(
    store: Store, settings: Settings, job_id: str, task_id: str, takeover: bool = False
) -> bool:
    """Move a running job to finalizing for ``task_id``; False when another task holds it."""
    claim: dict[str, Any] = {"finalizer": task_id, "finalizer_at": time.time()}
    if store.transition(job_id, ("running",), "finalizing", **claim):
        return True
    job = store.get_job(job_id)
    stale = time.time() - (job["finalizer_at"] or 0) > settings.task_time_limit_s
    mine = job["finalizer"] == task_id
    if not (job["state"] == "finalizing" and (mine or stale or takeover)):
        return False
    store.update_job(job_id, **claim)
    return True


def output_source(job: dict[str, Any]) -> str:
    """How outputs name their input: by id, never by the client's file name (PHI)."""
    if job["sequence_id"] is not None:
        return f"sequence {job['sequence_id']}"
    return f"slide {job['slide_id']}"


def model_label(job: dict[str, Any]) -> str:
    """How outputs name what ran: ``auto`` or the chain."""
    return " + ".join(job["params"]["models"]) if not job["params"]["auto"] else "auto"


def _output_mpp(info: dict[str, Any], scale: int) -> tuple[float | None, float | None]:
    """Microns per output pixel: the slide's, divided by the model's scale."""
    return (
        info["mpp_x"] / scale if info["mpp_x"] else None,
        info["mpp_y"] / scale if info["mpp_y"] else None,
    )


def provenance(job: dict[str, Any], slide: dict[str, Any]) -> dict[str, Any]:
    """What the output records about how it was made."""
    return {
        "job_id": job["id"],
        "software": SOFTWARE,
        "model": model_label(job),
        "models": job["params"]["models"],
        "model_sha256": job["model_sha256"],
        "provider": job["provider"],
        "source": {
            "slide_id": job["slide_id"],
            "sequence_id": job["sequence_id"],
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


def fail(store: Store, settings: Settings, job_id: str, message: str) -> bool:
    """Mark an active job failed and drop its partial output; False if it was not active."""
    if store.transition(job_id, ACTIVE_STATES, "failed", error=message, finished_at=time.time()):
        discard_partial(settings, job_id)
        return True
    return False


def discard_partial(settings: Settings, job_id: str) -> None:
    """Remove an unfinished output (cancelled or failed job)."""
    shutil.rmtree(job_paths(settings, job_id).partial, ignore_errors=True)
