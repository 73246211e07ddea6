"""Jobs: start, list, follow, cancel, and delete their files (outputs: job_outputs.py)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from app import idempotency
from app.auth import Caller, CallerDep
from app.deps import Services, services
from app.idempotency import IdempotencyKey
from app.openapi import errors
from app.schemas import HookState, JobCreate, JobPublic, Progress
from models.manifest import ModelManifest
from models.registry import get_model
from workers import hooks, retention, webhooks
from workers.engine.read_errors import without_paths
from workers.errors import Conflict, InvalidInput, ModelUnavailable, NotFound
from workers.idempotency import KeyedRequest
from workers.planning import (
    AUTO,
    CLASSIFIER,
    fluorescence_channels,
    plan_params,
    requested_models,
)
from workers.sequence_metadata import LASER
from workers.sequence_planning import plan_sequence, sequence_models
from workers.store import ACTIVE_STATES, FINAL_STATES, new_id

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
ROUTE = f"POST {router.prefix}"
Svc = Annotated[Services, Depends(services)]


def job_public(job: dict[str, Any], input_exists: bool = True) -> JobPublic:
    """The API view of a job record (no input URL once its slide or sequence was deleted)."""
    done, total = job["tiles_done"], job["tiles_total"]
    blocks_done, blocks_total = job["blocks_done"], job["blocks_total"] or 0
    eta = None
    since = job["restore_started_at"] or job["started_at"]
    if job["state"] == "running" and since and 0 < done < total:
        eta = (time.time() - since) * (total - done) / done  # at the tiles-per-second so far
    completed = job["state"] == "completed"
    base = f"/v1/jobs/{job['id']}"
    params = job["params"]
    frames = frames_total(params)
    kept = completed and job["output_deleted_at"] is None  # its files are there
    tiled = kept and frames is None  # a laser-scan job has a per-frame table instead
    return JobPublic(
        id=job["id"],
        slide_id=job["slide_id"],
        sequence_id=job["sequence_id"],
        model="auto" if _is_auto(params) else _chain_or_name(params["models"]),
        state=job["state"],
        progress=Progress(
            tiles_done=done,
            tiles_total=total,
            regions_done=job["regions_done"],
            regions_total=job["regions_total"],
            blocks_done=blocks_done,
            blocks_total=blocks_total,
            fraction=1.0 if completed else _fraction(done, total, blocks_done, blocks_total),
        ),
        eta_s=eta,
        params=params,
        timings=job["timings"] or {},
        error=job["error"] and without_paths(job["error"]),
        provider=job["provider"],
        model_sha256=job["model_sha256"],
        created_at=job["created_at"],
        started_at=job["started_at"],
        finished_at=job["finished_at"],
        metrics=job["metrics"],
        output_url=f"{base}/output.zarr" if kept else None,
        dzi_url=f"{base}/output.dzi" if kept else None,
        tiles_url=f"{base}/tiles.csv" if tiled else None,
        tiles_parquet_url=f"{base}/tiles.parquet" if tiled else None,
        blur_map_url=f"{base}/blur-map.png" if kept and params.get("classify") else None,
        report_url=f"{base}/report" if tiled else None,
        viewer_url=f"/?job={job['id']}",
        hooks=_hook_states(job, base if kept else None),
        metadata=job["client_metadata"] or {},
        input_dzi_url=_input_dzi_url(job, frames) if input_exists else None,
        frames_total=frames,
        frames_url=f"{base}/frames.csv" if kept and frames else None,
        output_deleted_at=job["output_deleted_at"],
    )


def _input_dzi_url(job: dict[str, Any], frames: int | None) -> str | None:
    """Deep Zoom of what the job restores (a mosaic once its frames are placed)."""
    if job["slide_id"] is not None:
        return f"/v1/slides/{job['slide_id']}/image.dzi"
    if frames is not None:
        return f"/v1/sequences/{job['sequence_id']}/frames/0/image.dzi"
    registered = job["state"] not in ("queued",) and job["regions_total"] > 0
    registered = registered and job["output_deleted_at"] is None  # positions.json is gone
    return f"/v1/jobs/{job['id']}/input.dzi" if registered else None


def _is_auto(params: dict[str, Any]) -> bool:
    return bool(params.get("auto") or params.get("sequence", {}).get("auto"))


def frames_total(params: dict[str, Any]) -> int | None:
    """Frames on the output's time axis (laser-scan jobs only)."""
    frames = params.get("sequence", {}).get("frames")
    return int(frames) if frames else None


def _hook_states(job: dict[str, Any], base: str | None) -> dict[str, HookState]:
    """Each requested hook's state: its reduced result once the job has finished.

    ``base`` is the job's URL, or None once its files were deleted (no points to link).
    """
    finished = job["hooks"] or {}
    states = {}
    for name in job["params"].get("hooks", []):
        entry = finished.get(name)
        if entry is None:
            error = "the job did not complete" if job["state"] in FINAL_STATES else None
            states[name] = HookState(
                state="failed" if error else "pending", result=None, error=error
            )
            continue
        points = base is not None and entry.get("centroids")
        url = f"{base}/hooks/{name}/centroids.geojson" if points else None
        states[name] = HookState(
            state=entry["state"],
            result=entry["result"],
            error=entry["error"] and without_paths(entry["error"]),
            centroids_url=url,
        )
    return states


def _chain_or_name(models: list[str]) -> str | list[str]:
    return models[0] if len(models) == 1 else models


def _fraction(tiles_done: int, tiles_total: int, blocks_done: int, blocks_total: int) -> float:
    """Classification counts for a tenth of a job that classifies, restoration for the rest."""
    restored = tiles_done / tiles_total if tiles_total else 0.0
    if not blocks_total:
        return restored
    return 0.1 * blocks_done / blocks_total + 0.9 * restored


@router.post("", status_code=202, response_model=JobPublic, responses=errors(400, 404, 415, 422))
def create_job(
    body: JobCreate,
    response: Response,
    caller: CallerDep,
    svc: Svc,
    idempotency_key: IdempotencyKey = None,
) -> JobPublic:
    """Queue a restoration of a slide (or a region of it) or of a frame sequence.

    With an ``Idempotency-Key``, a retry (also one sent concurrently) gets the job the first
    request created; the same key with a different body is refused (422).
    """
    request = idempotency.keyed(idempotency_key, f"{ROUTE} {caller.tenant}", body)
    earlier = None if request is None else idempotency.keys(svc).find(request)
    if earlier is not None:
        idempotency.replayed(response)
        return job_public(svc.store.get_job(earlier.resource_id))
    plan = _plan_slide_job if body.sequence_id is None else _plan_sequence_job
    record, params = plan(body, svc, caller)
    record = {**record, "params": params, "client_metadata": body.metadata, "tenant": caller.tenant}
    job, created = _queue(svc, record, request, caller.key_id)
    if not created:
        idempotency.replayed(response)
    return job_public(job)


def _plan_slide_job(
    body: JobCreate, svc: Services, caller: Caller
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The record and parameters of a job on a slide (or a region of it) of the caller's."""
    assert body.slide_id is not None
    slide = svc.store.get_slide(body.slide_id, caller.tenant)
    auto = body.model == AUTO
    names = requested_models(body.model)
    manifests = [_generator(svc, name, auto) for name in names]
    classify = _has_classifier(svc, required=auto)
    info = slide["info"]
    params = plan_params(
        (info["width"], info["height"]),
        manifests,
        svc.settings,
        tuple(body.region) if body.region else None,  # type: ignore[arg-type]
        body.tile_px,
        body.overlap_px,
        body.skip_background,
        auto=auto,
        classify=classify,
        min_confidence=body.min_confidence,
    )
    params["hooks"] = _hooks(body.hooks)
    channels = fluorescence_channels(info, manifests, auto)
    if channels:
        extras = [n for n in ("evaluate", "reference_slide_id") if getattr(body, n)]
        if body.hooks or extras:
            what = ", ".join(["hooks"] * bool(body.hooks) + extras)
            raise InvalidInput(f"{what} work on RGB slides, not on fluorescence channels")
        params["channels"] = channels
        params["classify"] = False  # the blur classifier reads RGB brightfield or grey
    if body.mpp is not None:
        params["mpp"] = body.mpp
    if body.evaluate is not None:
        if params["scale"] != 1:
            raise InvalidInput("an evaluation job needs models that keep the image size")
        params["evaluate"] = body.evaluate.model_dump()
    if body.reference_slide_id is not None:
        svc.store.get_slide(body.reference_slide_id, caller.tenant)
        if params["scale"] != 1:
            raise InvalidInput("a reference comparison needs models that keep the image size")
        params["reference_slide_id"] = body.reference_slide_id
    return {"slide_id": slide["id"], "model": AUTO if auto else "+".join(names)}, params


SEQUENCE_ONLY_SLIDES = ("evaluate", "reference_slide_id", "region", "overlap_px", "mpp")


def _plan_sequence_job(
    body: JobCreate, svc: Services, caller: Caller
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plan a job on a frame sequence: a registered mosaic, or every frame on a time axis."""
    sequence = svc.store.get_sequence(body.sequence_id or "", caller.tenant)
    given = [name for name in SEQUENCE_ONLY_SLIDES if getattr(body, name) is not None]
    if given:
        raise InvalidInput(f"{', '.join(given)} apply to slides, not to frame sequences")
    mode = sequence["metadata"]["mode"]
    names, auto = sequence_models(mode, body.model)
    manifests = [_generator(svc, name, auto) for name in names]
    params = plan_sequence(sequence, manifests, svc.settings, auto, body.tile_px)
    if body.hooks and mode == LASER:
        raise InvalidInput(
            "hooks run on slides and continuous-stage mosaics, not on laser-scan frames"
        )
    params["hooks"] = _hooks(body.hooks)
    return {"sequence_id": sequence["id"], "model": AUTO if auto else "+".join(names)}, params


def _queue(
    svc: Services, record: dict[str, Any], request: KeyedRequest | None, actor: str
) -> tuple[dict[str, Any], bool]:
    """Store a planned job, announce it and queue its start: (the job, whether it is new).

    With a key, the job is stored only if no request with that key stored one first (then
    that job is the answer, and nothing is announced or queued again).
    """
    job_id = new_id()
    record = {**record, "id": job_id}
    if request is None:
        job = svc.store.add_job(record, actor=actor)
    else:
        keys = idempotency.keys(svc)
        job_id, added = keys.create_once(
            request, job_id, lambda guard: svc.store.add_job(record, guard, actor)
        )
        if added is None:
            return svc.store.get_job(job_id), False
        job = added
    emit_event(svc, job["id"], "job.queued")
    svc.celery.send_task("restore.start_job", args=[job["id"]])
    return job, True


def emit_event(svc: Services, job_id: str, kind: webhooks.WebhookEvent) -> None:
    """Record a job event and queue its delivery to each subscribed webhook."""
    for event_id, webhook_id in webhooks.emit(svc.store, svc.settings, job_id, kind):
        svc.celery.send_task("restore.webhook", args=[event_id, webhook_id, 1])


def _generator(svc: Services, name: str, auto: bool) -> ModelManifest:
    """The manifest of an installed generator (for ``auto``: one routing needs)."""
    try:
        model = get_model(svc.settings.models_dirs, name)
        model.verify()
    except ModelUnavailable as error:
        if auto:
            raise ModelUnavailable(f"model auto needs {error.message}") from None
        raise
    if model.manifest.kind != "generator":
        raise InvalidInput(f"model {name} is a {model.manifest.kind}, not a generator")
    return model.manifest


def _has_classifier(svc: Services, required: bool) -> bool:
    """Whether the blur classifier is installed (``auto`` cannot run without it)."""
    try:
        get_model(svc.settings.models_dirs, CLASSIFIER).verify()
    except ModelUnavailable as error:
        if required:
            raise ModelUnavailable(f"model auto needs {error.message}") from None
        return False
    return True


@router.get("", response_model=list[JobPublic])
def list_jobs(caller: CallerDep, svc: Svc) -> list[JobPublic]:
    """The newest jobs of the caller's tenant."""
    found = svc.store.list_jobs(tenant=caller.tenant)
    return [job_public(j, _input_exists(svc, j)) for j in found]


@router.get("/{job_id}", response_model=JobPublic, responses=errors(404))
def get_job(job_id: str, svc: Svc) -> JobPublic:
    """State, progress, ETA, timings, errors and output links of a job."""
    job = svc.store.get_job(job_id)
    return job_public(job, _input_exists(svc, job))


def _input_exists(svc: Services, job: dict[str, Any]) -> bool:
    """Whether the job's slide or sequence is still there (its output outlives it)."""
    try:
        if job["slide_id"] is not None:
            svc.store.get_slide(job["slide_id"])
        else:
            svc.store.get_sequence(job["sequence_id"])
    except NotFound:
        return False
    return True


@router.delete("/{job_id}", response_model=JobPublic, responses=errors(404, 409))
def cancel_job(job_id: str, caller: CallerDep, svc: Svc) -> JobPublic:
    """Cancel a queued or running job; its workers stop at the next tile batch."""
    cancelled = svc.store.transition(
        job_id, ACTIVE_STATES, "cancelled", actor=caller.key_id, finished_at=time.time()
    )
    if not cancelled:
        state = svc.store.get_job(job_id)["state"]
        raise Conflict(f"job {job_id} is already {state}")
    emit_event(svc, job_id, "job.cancelled")
    return job_public(svc.store.get_job(job_id))


@router.delete("/{job_id}/output", status_code=204, responses=errors(404, 409))
def delete_output(job_id: str, svc: Svc) -> Response:
    """Delete every file of a finished job (the record stays, with ``output_deleted_at``)."""
    retention.delete_job_output(svc.store, svc.settings, job_id)
    return Response(status_code=204)


def _hooks(names: list[str]) -> list[str]:
    """The requested hooks, each once, after checking that they are installed."""
    unique = list(dict.fromkeys(names))
    installed = hooks.installed()
    missing = [name for name in unique if name not in installed]
    if missing:
        names_installed = ", ".join(sorted(installed)) or "none"
        raise InvalidInput(f"hook {missing[0]!r} is not installed (installed: {names_installed})")
    return unique
