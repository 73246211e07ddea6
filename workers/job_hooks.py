"""The hook phase of a job: its hooks run on every region's input and output tiles, then reduce.

It runs after the last region is restored, one task per region (so it scales with the
workers, and a tile sees its neighbours' finished output as context): each tissue tile is
measured on the input and on the output, with a margin of context around its core, and
only what lies in the core counts, so a nucleus on a tile boundary is counted once. A
hook that raises records its error and the job goes on; the finish reduces each hook's
tiles into ``job["hooks"][name] = {"state", "result", "error"}``, adds its columns to the
tile table, and writes the points it found on the output as GeoJSON (QuPath imports it).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from workers import hooks
from workers.engine import omezarr
from workers.engine.geometry import Box
from workers.engine.labels import write_label
from workers.engine.nuclei import DEFAULT_MPP
from workers.engine.pipeline import MIN_TISSUE_FRACTION, mirror_to, read_padded
from workers.engine.readers import SlideReader
from workers.engine.tiling import TileGrid
from workers.engine.tissue import TissueMap
from workers.job_readers import job_reader, job_source
from workers.job_results import label_scale
from workers.layout import JobPaths, job_paths
from workers.planning import cells_from_params, grid_from_params
from workers.settings import Settings
from workers.store import Store

MARGIN_UM = 10.0  # context around a tile: more than a nucleus's radius
SAMPLES, SAMPLE_PX = 8, 512  # full-resolution tissue squares a hook calibrates on


def todo(store: Store, job_id: str) -> list[int]:
    """Regions whose hooks are still to run (none when the job has no hooks)."""
    params = store.get_job(job_id)["params"]
    if not params.get("hooks"):
        return []
    done = store.done_hook_regions(job_id)
    return [i for i in range(len(grid_from_params(params).regions)) if i not in done]


def run_region(store: Store, settings: Settings, job_id: str, region_index: int) -> bool:
    """Run the job's hooks on one region unless done; True when every region's have run."""
    job = store.get_job(job_id)
    if job["state"] != "running":
        return False
    params = job["params"]
    grid = grid_from_params(params)
    if region_index not in store.done_hook_regions(job_id):
        paths = job_paths(settings, job_id)
        info = job_source(store, job)["info"]
        tissue = TissueMap.load(paths.tissue) if paths.tissue.exists() else None
        reader = job_reader(store, settings, job)
        mpp = info.get("mpp_x")
        calibration = _calibration(paths, reader, grid, params["hooks"], mpp, tissue)
        measured = measure_region(
            reader, paths.partial, grid, region_index, params["hooks"], mpp, tissue, calibration
        )
        paths.hook_regions.mkdir(parents=True, exist_ok=True)
        target = paths.hook_regions / f"{region_index:06d}.json"
        partial = target.with_suffix(".partial")
        partial.write_text(json.dumps(measured))
        partial.replace(target)
        store.mark_hook_region_done(job_id, region_index)
    return len(store.done_hook_regions(job_id)) == len(grid.regions)


def _calibration(
    paths: JobPaths,
    reader: SlideReader,
    grid: TileGrid,
    names: list[str],
    mpp: float | None,
    tissue: TissueMap | None,
) -> dict[str, Any]:
    """Each hook's calibration, computed once per job (deterministic, so a race is harmless)."""
    if paths.hook_calibration.exists():
        loaded: dict[str, Any] = json.loads(paths.hook_calibration.read_text())
        return loaded
    samples = tissue_samples(reader, grid, tissue)
    calibration = {}
    for name in names:
        try:
            calibration[name] = hooks.calibrate(hooks.load(name), samples, mpp)
        except Exception as error:  # measure_region reports the hook failed
            calibration[name] = {"error": f"{type(error).__name__}: {error}"}
    paths.hook_calibration.parent.mkdir(parents=True, exist_ok=True)
    partial = paths.hook_calibration.with_suffix(f".{os.getpid()}.{time.time_ns()}.partial")
    partial.write_text(json.dumps(calibration))
    partial.replace(paths.hook_calibration)
    return calibration


def tissue_samples(
    reader: SlideReader, grid: TileGrid, tissue: TissueMap | None
) -> list[np.ndarray]:
    """Up to ``SAMPLES`` squares of ``SAMPLE_PX`` from tissue tiles spread over the area."""
    tiles = [
        t for t in grid.tiles if tissue is None or tissue.fraction(t.core) >= 0.5
    ] or grid.tiles
    picked = [
        tiles[i] for i in np.linspace(0, len(tiles) - 1, min(SAMPLES, len(tiles))).astype(int)
    ]
    samples = []
    for tile in picked:
        side_x, side_y = min(SAMPLE_PX, tile.core.width), min(SAMPLE_PX, tile.core.height)
        x = tile.core.x + (tile.core.width - side_x) // 2
        y = tile.core.y + (tile.core.height - side_y) // 2
        samples.append(read_padded(reader, Box(x, y, side_x, side_y)))
    return samples


def measure_region(
    reader: SlideReader,
    output: Path,
    grid: TileGrid,
    region_index: int,
    names: list[str],
    mpp: float | None,
    tissue: TissueMap | None,
    calibration: dict[str, Any],
) -> dict[str, Any]:
    """Every hook's measures of the region's tissue tiles, before and after, or its error."""
    margin = math.ceil(MARGIN_UM / (mpp or DEFAULT_MPP))
    region = grid.regions[region_index]
    context = region.expand(margin)
    before = read_padded(reader, context)
    after = _read_output(output, grid, context)
    tiles = [
        t
        for t in grid.tiles_of(region_index)
        if tissue is None or tissue.fraction(t.core) >= MIN_TISSUE_FRACTION
    ]
    scale = grid.scale
    results: dict[str, Any] = {}
    for name in names:
        rows = []
        try:
            hook = hooks.load(name)
            calibrated = calibration.get(name, {})
            if "error" in calibrated:
                raise RuntimeError(f"calibration failed: {calibrated['error']}")
            for tile in tiles:
                crop = tile.core.expand(margin)
                inside = tile.core.relative_to(crop)
                fraction = 1.0 if tissue is None else tissue.fraction(tile.core)
                origin = grid.output_box(tile.core)
                rows.append(
                    {
                        "tile": tile.index,
                        "origin": [origin.x, origin.y],
                        "area_um2": tile.core.area * fraction * mpp * mpp if mpp else None,
                        "before": hook.measure(
                            before[crop.relative_to(context).slices()], inside, mpp, calibrated
                        ),
                        "after": hook.measure(
                            after[crop.relative_to(context).scaled(scale).slices()],
                            inside.scaled(scale),
                            mpp / scale if mpp else None,
                            calibrated,
                        ),
                    }
                )
        except Exception as error:  # a hook's failure is its own, never the job's
            results[name] = {"tiles": [], "error": f"{type(error).__name__}: {error}"}
            continue
        results[name] = {"tiles": rows, "error": None}
    return results


def _read_output(output: Path, grid: TileGrid, context: Box) -> np.ndarray:
    """The output pixels under a level-0 box; parts outside the output mirrored from inside."""
    full = grid.output_box(grid.area)
    wanted = grid.output_box(context)
    inside = wanted.intersect(full)
    assert inside is not None
    return mirror_to(omezarr.read_box(output, inside), inside, wanted)


def reduce(
    paths: JobPaths, params: dict[str, Any]
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Each hook's ``{"state", "result", "error"}`` and the tile table's hook columns.

    Writes each hook's output points (``centroids`` of its measures) as GeoJSON.
    """
    regions = [json.loads(p.read_text()) for p in sorted(paths.hook_regions.glob("*.json"))]
    results: dict[str, Any] = {}
    columns: dict[int, dict[str, Any]] = {}
    for name in params.get("hooks", []):
        parts = [r[name] for r in regions if name in r]
        errors = [p["error"] for p in parts if p["error"]]
        if errors:
            results[name] = {"state": "failed", "result": None, "error": errors[0]}
            continue
        rows = [row for p in parts for row in p["tiles"]]
        try:
            hook = hooks.load(name)
            areas = [row["area_um2"] for row in rows]
            area = sum(areas) if rows and all(a is not None for a in areas) else None
            result = hook.reduce([r["before"] for r in rows], [r["after"] for r in rows], area)
            for row in rows:
                columns.setdefault(row["tile"], {}).update(
                    hook.tile_columns(row["before"], row["after"])
                )
            centroids = any("centroids" in row["after"] for row in rows)
            if centroids:
                write_geojson(paths.hook_centroids(name), name, rows)
        except Exception as error:
            results[name] = {"state": "failed", "result": None, "error": f"{error}"}
            continue
        results[name] = {
            "state": "completed",
            "result": result,
            "error": None,
            "centroids": centroids,
        }
    return results, columns


def write_density_labels(paths: JobPaths, params: dict[str, Any], info: dict[str, Any]) -> None:
    """``labels/<hook>-density``: per blur-map cell, the points a hook found on the output."""
    if not params.get("hooks"):
        return
    regions = [json.loads(p.read_text()) for p in sorted(paths.hook_regions.glob("*.json"))]
    cells = cells_from_params(params)
    cell_out = cells.cell_px * params["scale"]
    scale, unit = label_scale(params, info)
    for name in params["hooks"]:
        rows = [
            row for r in regions if name in r and not r[name]["error"] for row in r[name]["tiles"]
        ]
        if not rows or not any("centroids" in row["after"] for row in rows):
            continue
        counts = np.zeros(cells.shape, dtype=np.int64)
        for row in rows:
            x0, y0 = row["origin"]
            for x, y in row["after"].get("centroids", []):
                r, c = int((y0 + y) // cell_out), int((x0 + x) // cell_out)
                if 0 <= r < counts.shape[0] and 0 <= c < counts.shape[1]:
                    counts[r, c] += 1
        values = np.minimum(counts, np.iinfo(np.uint16).max)
        write_label(
            paths.partial,
            f"{name}-density",
            values,
            scale,
            unit,
            ["none"],
            [(0, 0, 0, 0)],
            "uint16",
        )


def write_geojson(path: Path, name: str, rows: list[dict[str, Any]]) -> int:
    """The output's points (level-0 output pixels) as a GeoJSON FeatureCollection of detections."""
    features = []
    for row in rows:
        x0, y0 = row["origin"]
        for x, y in row["after"]["centroids"]:
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [x0 + x, y0 + y]},
                    "properties": {"objectType": "detection", "hook": name, "tile": row["tile"]},
                }
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    partial.replace(path)
    return len(features)
