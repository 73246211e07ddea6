"""A finished job's outputs: the OME-Zarr files, Deep Zoom, tables, report, exports."""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from app import deepzoom
from app.deps import Services, services
from app.openapi import errors, file
from app.routes.jobs import frames_total
from app.schemas import ExportPending
from workers.engine.blurmap_image import blur_map_png
from workers.engine.labels import read_label
from workers.engine.omezarr import OmeZarrReader
from workers.engine.readers import SlideReader
from workers.engine.timelapse import TimeFrameReader
from workers.errors import Conflict, Gone, NotFound
from workers.job_readers import mosaic_reader
from workers.layout import job_paths
from workers.report import render as render_report
from workers.tile_table import write_parquet

router = APIRouter(prefix="/v1/jobs", tags=["outputs"])
EXPORT_RETRY_S = 5
FINISHED = (404, 409, 410)  # no such job or file; not completed; its output was deleted
TILE = file("image/jpeg", "one Deep Zoom tile", *FINISHED, 422)
DESCRIPTOR = file("application/xml", "the Deep Zoom descriptor", *FINISHED)
Svc = Annotated[Services, Depends(services)]


def _completed_output(svc: Services, job_id: str) -> Path:
    job = svc.store.get_job(job_id)
    if job["state"] != "completed":
        raise Conflict(f"job {job_id} is {job['state']}; its output exists once completed")
    if job["output_deleted_at"] is not None:
        raise Gone(f"the output of job {job_id} was deleted")
    return job_paths(svc.settings, job_id).output


@router.get(
    "/{job_id}/output.zarr/{file_path:path}",
    response_class=FileResponse,
    responses=file(
        ("application/json", "application/octet-stream"),
        "metadata (.zattrs, .zarray, zarr.json...) as JSON, chunks as bytes",
        *FINISHED,
    ),
)
def output_file(job_id: str, file_path: str, svc: Svc) -> FileResponse:
    """Files of the finished OME-Zarr store, for readers that open it by URL."""
    root = _completed_output(svc, job_id).resolve()
    try:
        target = (root / file_path).resolve()
        found = target.is_relative_to(root) and target.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or one with NUL
        found = False
    if not found:
        raise NotFound(f"{file_path} is not in the output of job {job_id}")
    media = "application/json" if target.name.startswith(".z") else "application/octet-stream"
    return FileResponse(target, media_type=media)


@router.get(
    "/{job_id}/hooks/{name}/centroids.geojson",
    response_class=FileResponse,
    responses=file("application/geo+json", "the points, as a GeoJSON FeatureCollection", *FINISHED),
)
def hook_centroids(job_id: str, name: str, svc: Svc) -> FileResponse:
    """The points a hook found on the output (level-0 output pixels), as GeoJSON for QuPath."""
    _completed_output(svc, job_id)
    path = job_paths(svc.settings, job_id).hook_centroids(name)
    if name not in (svc.store.get_job(job_id)["params"].get("hooks") or []) or not path.is_file():
        raise NotFound(f"job {job_id} has no points from hook {name!r}")
    return FileResponse(
        path, media_type="application/geo+json", filename=f"{job_id}-{name}.geojson"
    )


@router.get(
    "/{job_id}/output.ome.tiff",
    response_model=None,
    response_class=FileResponse,
    responses={
        **file("image/tiff", "the pyramidal OME-TIFF", *FINISHED),
        202: {"model": ExportPending, "description": "the export is being written: retry"},
    },
)
def ome_tiff(job_id: str, svc: Svc) -> FileResponse | JSONResponse:
    """The output as a pyramidal OME-TIFF; the first request queues its export (202)."""
    _completed_output(svc, job_id)
    if svc.store.get_job(job_id)["params"].get("channels"):
        raise Conflict(
            "the OME-TIFF export writes RGB; this job's fluorescence channels are in its "
            "OME-Zarr (output.zarr), one array channel each"
        )
    paths = job_paths(svc.settings, job_id)
    if paths.ome_tiff.is_file():
        return FileResponse(paths.ome_tiff, media_type="image/tiff", filename=f"{job_id}.ome.tiff")
    marker = paths.ome_tiff_requested
    stale = (
        marker.exists() and time.time() - marker.stat().st_mtime > svc.settings.task_time_limit_s
    )
    if not marker.exists() or stale:
        marker.touch()
        svc.celery.send_task("restore.export_ome_tiff", args=[job_id])
    pending = ExportPending(
        state="exporting", message="the OME-TIFF is being written; retry shortly"
    )
    return JSONResponse(
        pending.model_dump(),
        status_code=202,
        headers={"Retry-After": str(EXPORT_RETRY_S)},
    )


@router.get(
    "/{job_id}/tiles.csv",
    response_class=FileResponse,
    responses=file("text/csv", "one row per tile", *FINISHED),
)
def tile_table(job_id: str, svc: Svc) -> FileResponse:
    """The per-tile table: where, blur class, confidence, extent, model, sharpness."""
    _completed_output(svc, job_id)
    path = job_paths(svc.settings, job_id).tile_table
    if not path.is_file():
        raise NotFound(f"job {job_id} has no tile table")
    return FileResponse(path, media_type="text/csv", filename=f"{job_id}-tiles.csv")


@router.get(
    "/{job_id}/tiles.parquet",
    response_class=FileResponse,
    responses=file("application/vnd.apache.parquet", "one row per tile", *FINISHED),
)
def tile_table_parquet(job_id: str, svc: Svc) -> FileResponse:
    """The per-tile table as Parquet (typed columns), for pandas, Polars, DuckDB or Spark."""
    _completed_output(svc, job_id)
    paths = job_paths(svc.settings, job_id)
    if not paths.tile_table.is_file():
        raise NotFound(f"job {job_id} has no tile table")
    if not paths.tile_table_parquet.is_file():
        write_parquet(paths.tile_table, paths.tile_table_parquet)
    return FileResponse(
        paths.tile_table_parquet,
        media_type="application/vnd.apache.parquet",
        filename=f"{job_id}-tiles.parquet",
    )


@router.get(
    "/{job_id}/blur-map.png",
    response_class=Response,
    responses=file("image/png", "the blur map", *FINISHED),
)
def blur_map(job_id: str, svc: Svc) -> Response:
    """The blur map, one RGBA pixel per cell (``metrics.qc.cell_px`` level-0 px), for overlays."""
    output = _completed_output(svc, job_id)
    if not (output / "labels" / "blur").is_dir():
        raise NotFound(f"job {job_id} has no blur map")
    png = blur_map_png(read_label(output, "blur"))
    return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


@router.get(
    "/{job_id}/report",
    response_class=Response,  # not HTMLResponse, which would document the errors as HTML
    responses=file("text/html", "the report", *FINISHED),
)
def report(job_id: str, svc: Svc) -> HTMLResponse:
    """One-page HTML report: verdict, class shares, sharpness before/after, blur map."""
    output = _completed_output(svc, job_id)
    job = svc.store.get_job(job_id)
    if not job["metrics"]:
        raise NotFound(f"job {job_id} has no metrics")
    return HTMLResponse(render_report(job, output))


@lru_cache(maxsize=16)
def _output_reader(path: str) -> OmeZarrReader:
    return OmeZarrReader(Path(path))


@lru_cache(maxsize=64)
def _frame_reader(path: str, t: int) -> TimeFrameReader:
    return TimeFrameReader(Path(path), t)


def _image(svc: Services, job_id: str, t: int | None = None) -> SlideReader:
    """The restored image: the output, or frame ``t`` of a laser-scan job's time axis."""
    output = str(_completed_output(svc, job_id))
    frames = frames_total(svc.store.get_job(job_id)["params"])
    if frames is None:
        if t is not None:
            raise NotFound(f"job {job_id} has no time axis")
        return _output_reader(output)
    if not 0 <= (t or 0) < frames:
        raise NotFound(f"job {job_id} has frames 0 to {frames - 1}")
    return _frame_reader(output, t or 0)


@router.get("/{job_id}/output.dzi", response_class=Response, responses=DESCRIPTOR)
def output_dzi(job_id: str, svc: Svc) -> Response:
    """Deep Zoom descriptor of the restored image (of frame 0 on a time axis)."""
    return deepzoom.descriptor(_image(svc, job_id))


@router.get(
    "/{job_id}/output_files/{level}/{col}_{row}.jpeg", response_class=Response, responses=TILE
)
def output_tile(job_id: str, level: int, col: int, row: int, svc: Svc) -> Response:
    """One Deep Zoom tile of the restored image, read from the OME-Zarr pyramid."""
    return deepzoom.tile(_image(svc, job_id), level, col, row)


@router.get(
    "/{job_id}/frames/{t}/output.dzi",
    response_class=Response,
    responses={**DESCRIPTOR, **errors(422)},
)
def frame_dzi(job_id: str, t: int, svc: Svc) -> Response:
    """Deep Zoom descriptor of frame ``t`` of a laser-scan job's output."""
    return deepzoom.descriptor(_image(svc, job_id, t))


@router.get(
    "/{job_id}/frames/{t}/output_files/{level}/{col}_{row}.jpeg",
    response_class=Response,
    responses=TILE,
)
def frame_tile(job_id: str, t: int, level: int, col: int, row: int, svc: Svc) -> Response:
    """One Deep Zoom tile of frame ``t`` of a laser-scan job's output."""
    return deepzoom.tile(_image(svc, job_id, t), level, col, row)


@router.get(
    "/{job_id}/input.dzi",
    response_class=Response,
    responses=file("application/xml", "the Deep Zoom descriptor", 404),
)
def input_dzi(job_id: str, svc: Svc) -> Response:
    """Deep Zoom descriptor of a sequence job's input: its frames at their registered places."""
    return deepzoom.descriptor(_mosaic_input(svc, job_id))


@router.get(
    "/{job_id}/input_files/{level}/{col}_{row}.jpeg",
    response_class=Response,
    responses=file("image/jpeg", "one Deep Zoom tile", 404, 422),
)
def input_tile(job_id: str, level: int, col: int, row: int, svc: Svc) -> Response:
    """One Deep Zoom tile of a sequence job's input mosaic (before restoration)."""
    return deepzoom.tile(_mosaic_input(svc, job_id), level, col, row)


def _mosaic_input(svc: Services, job_id: str) -> SlideReader:
    job = svc.store.get_job(job_id)
    if job["sequence_id"] is None or not job_paths(svc.settings, job_id).positions.exists():
        raise NotFound(f"job {job_id} has no registered frame mosaic")
    return mosaic_reader(svc.settings, job)


@router.get(
    "/{job_id}/frames.csv",
    response_class=FileResponse,
    responses=file("text/csv", "one row per frame", *FINISHED),
)
def frame_table(job_id: str, svc: Svc) -> FileResponse:
    """The per-frame table of a laser-scan job: line shift, sharpness before and after."""
    _completed_output(svc, job_id)
    path = job_paths(svc.settings, job_id).frame_table
    if not path.is_file():
        raise NotFound(f"job {job_id} has no per-frame table")
    return FileResponse(path, media_type="text/csv", filename=f"{job_id}-frames.csv")
