"""What a finished job reports beside its image: blur labels, metrics, reference figures."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from workers import metrics, tile_table
from workers.engine.blurmap import CLASS_COLOURS, CLASS_NAMES, IN_FOCUS, BlurMap
from workers.engine.degraded import forward_psf
from workers.engine.evaluation import compare_with_baselines, sample_boxes
from workers.engine.geometry import Box
from workers.engine.labels import write_label
from workers.engine.omezarr import OmeZarrReader
from workers.engine.reference import compare, register
from workers.engine.tissue import TissueMap
from workers.job_readers import job_reader, reader_for
from workers.layout import JobPaths
from workers.planning import cells_from_params
from workers.settings import Settings
from workers.store import Store

ROUTE_COLOURS = [
    (31, 119, 220, 160),
    (230, 120, 20, 160),
    (200, 40, 160, 160),
    (120, 120, 120, 160),
    (20, 180, 180, 160),
    (180, 180, 20, 160),
]


def label_scale(
    params: dict[str, Any], info: dict[str, Any]
) -> tuple[tuple[float, float], str | None]:
    """(y, x) scale of a label on the job's cells, in the image's units, and that unit."""
    cell_px = cells_from_params(params).cell_px
    mpp_x, mpp_y = info["mpp_x"], info["mpp_y"]
    if mpp_x and mpp_y:
        return (cell_px * mpp_y, cell_px * mpp_x), "micrometer"
    return (float(cell_px * params["scale"]),) * 2, None


def write_blur_labels(paths: JobPaths, params: dict[str, Any], info: dict[str, Any]) -> None:
    """``labels/blur`` and ``labels/restored`` on the blur map's cells, when classified."""
    if not paths.blur_map.exists():
        return
    cells = cells_from_params(params)
    cell_scale, unit = label_scale(params, info)
    blur_map = BlurMap.load(paths.blur_map)
    write_label(
        paths.partial,
        "blur",
        blur_map.classes,
        cell_scale,
        unit,
        list(CLASS_NAMES),
        list(CLASS_COLOURS),
    )
    codes, names = metrics.restored_cells(list(tile_table.read_rows(paths.tile_rows)), cells)
    if params["auto"]:  # auto replaces pixels only over blurred cells
        codes = np.where(blur_map.classes > IN_FOCUS, codes, 0).astype(np.uint8)
    colours = [(0, 0, 0, 0), *ROUTE_COLOURS[: len(names) - 1]]
    write_label(paths.partial, "restored", codes, cell_scale, unit, names, colours)


def job_metrics(
    store: Store, settings: Settings, job_id: str, paths: JobPaths, finalize_s: float
) -> dict[str, Any]:
    """The job's metrics (see the README for the schema)."""
    job = store.get_job(job_id)
    params = job["params"]
    rows = list(tile_table.read_rows(paths.tile_rows))
    stages = tile_table.stage_seconds(paths.tile_rows)
    area = params["area"][2] * params["area"][3]
    wall = time.time() - (job["started_at"] or time.time())
    timings = {
        "plan": job["timings"].get("plan_s", 0.0),
        "classify": job["timings"].get("classify_s", 0.0),
        **stages,
        "pyramid": finalize_s,
        "wall": wall,
        "mpx_per_s": area / 1e6 / wall if wall > 0 else None,
    }
    result: dict[str, Any] = {
        "tiles": metrics.tile_counts(rows),
        "sharpness": metrics.slide_sharpness(rows),
        "timings": timings,
    }
    if params.get("reference_slide_id"):
        result["reference"] = _reference_metrics(store, settings, job, paths)
    if params.get("evaluate"):
        result["evaluation"] = _evaluation_metrics(store, settings, job, paths)
    if paths.positions.exists():
        result["registration"] = registration_metrics(paths)
    if paths.blur_map.exists():
        result["qc"] = metrics.quality_control(
            BlurMap.load(paths.blur_map), cells_from_params(params), settings.rescan_blurred_share
        )
    return result


def _reference_metrics(
    store: Store, settings: Settings, job: dict[str, Any], paths: JobPaths
) -> dict[str, Any]:
    """Input and output against the registered reference slide."""
    started = time.perf_counter()
    reader = reader_for(settings, store.get_slide(job["slide_id"]))
    reference = reader_for(settings, store.get_slide(job["params"]["reference_slide_id"]))
    area = Box(*job["params"]["area"])
    shift = register(reader, reference, area)
    result = compare(reader, OmeZarrReader(paths.output), reference, area, shift)
    return {**result, "seconds": time.perf_counter() - started}


def _evaluation_metrics(
    store: Store, settings: Settings, job: dict[str, Any], paths: JobPaths
) -> dict[str, Any]:
    """The degraded input, the output and the baselines against the sharp original."""
    started = time.perf_counter()
    original = reader_for(settings, store.get_slide(job["slide_id"]))
    degraded = job_reader(store, settings, job)
    output = OmeZarrReader(paths.output)
    area = Box(*job["params"]["area"])
    whole = compare(degraded, output, original, area, (0.0, 0.0))
    tissue = TissueMap.load(paths.tissue) if paths.tissue.exists() else None
    psf = forward_psf(job["params"]["evaluate"])
    sample = compare_with_baselines(
        original, degraded, output, area, psf, sample_boxes(area, tissue)
    )
    return {
        "degradation": job["params"]["evaluate"],
        "slide": {"input": whole["input"], "output": whole["output"]},
        "sample": sample,
        "seconds": time.perf_counter() - started,
    }


def registration_metrics(paths: JobPaths) -> dict[str, Any] | None:
    """``metrics.registration``: every frame's position and every pair's residual."""
    path = paths.positions
    if not path.exists():
        return None
    solved = json.loads(path.read_text())
    pairs = solved["pairs"]
    residuals = np.array([p["residual_px"] for p in pairs if p["reliable"]] or [0.0])
    origin = np.round(np.asarray(solved["positions"])).min(axis=0)
    return {
        "frames": len(solved["positions"]),
        "pairs_total": len(pairs),
        "pairs_reliable": sum(1 for p in pairs if p["reliable"]),
        "residual_px": {
            "mean": float(residuals.mean()),
            "p95": float(np.percentile(residuals, 95)),
            "max": float(residuals.max()),
        },
        "positions": (np.asarray(solved["positions"]) - origin).round(3).tolist(),
        "pairs": pairs,
        "seconds": solved["seconds"],
    }
