"""The per-tile table of a job: one JSON-lines file per region while it runs, CSV at the end.

A region writes the rows of the tiles it owns (core centre inside it), so every tile has
exactly one row however often a region is redone.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from workers.engine.blurmap import CLASS_NAMES
from workers.engine.classification import sharpness_under
from workers.engine.routing import TileDecision
from workers.engine.sharpness import MEASURES
from workers.engine.tile_source import TileRecord
from workers.engine.tiling import TileGrid
from workers.planning import cells_from_params

COLUMNS = (
    "tile",
    "x",
    "y",
    "width",
    "height",
    "blur_class",
    "confidence",
    "extent_px",
    "model",
    "motion_psf",
    *(f"{m}_before" for m in MEASURES),
    *(f"{m}_after" for m in MEASURES),
)


def write_region(
    directory: Path, region_index: int, stages: dict[str, float], rows: list[dict[str, Any]]
) -> None:
    """Write one region's rows (and its stage timings) atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{region_index:06d}.jsonl"
    partial = path.with_suffix(".partial")
    lines = [json.dumps({"region": region_index, "stages": stages})]
    lines += [json.dumps(row) for row in rows]
    partial.write_text("\n".join(lines) + "\n")
    partial.replace(path)


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jsonl")) if directory.exists() else []


def read_rows(directory: Path) -> Iterator[dict[str, Any]]:
    """Every tile row, region by region."""
    for path in _files(directory):
        with path.open() as handle:
            next(handle)
            for line in handle:
                yield json.loads(line)


def stage_seconds(directory: Path) -> dict[str, float]:
    """Seconds per stage summed over the regions."""
    totals: dict[str, float] = {}
    for path in _files(directory):
        with path.open() as handle:
            for stage, seconds in json.loads(next(handle))["stages"].items():
                totals[stage] = totals.get(stage, 0.0) + seconds
    return totals


def write_csv(directory: Path, target: Path, extra: dict[int, dict[str, Any]] | None = None) -> int:
    """The whole table as CSV (rows sorted by tile); returns the number of rows.

    ``extra``: more columns per tile (the hooks'), empty where a tile has none.
    """
    extra = extra or {}
    rows = sorted(read_rows(directory), key=lambda row: int(row["tile"]))
    rows = [{**row, **extra.get(int(row["tile"]), {})} for row in rows]
    names = list(dict.fromkeys(name for columns in extra.values() for name in columns))
    partial = target.with_suffix(".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*COLUMNS, *names], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(target)
    return len(rows)


def write_parquet(table_csv: Path, target: Path) -> None:
    """The finished CSV table as Parquet, with typed columns (empty cells are nulls)."""
    from pyarrow import csv as arrow_csv
    from pyarrow import parquet

    partial = target.with_suffix(f".{time.time_ns()}.partial")
    parquet.write_table(arrow_csv.read_csv(table_csv), partial)
    partial.replace(target)


def tile_rows(
    grid: TileGrid,
    params: dict[str, Any],
    decisions: dict[int, TileDecision] | None,
    records: list[TileRecord],
    features: np.ndarray | None,
) -> list[dict[str, Any]]:
    """The table rows of a region's owned tiles: where, what was found, what ran, sharpness.

    A copied tile's sharpness (before = after) comes from its blur-map cells.
    """
    cells = cells_from_params(params) if features is not None else None
    chain = "+".join(params["models"])
    rows = []
    for record in records:
        core = grid.tiles[record.index].core
        decision = decisions[record.index] if decisions else None
        before, after = record.sharpness_before, record.sharpness_after
        if not record.restored and features is not None and cells is not None:
            before = after = sharpness_under(features, cells, core)
        row: dict[str, Any] = {
            "tile": record.index,
            "x": core.x,
            "y": core.y,
            "width": core.width,
            "height": core.height,
            "blur_class": CLASS_NAMES[decision.blur_class] if decision else None,
            "confidence": round(decision.confidence, 4) if decision else None,
            "extent_px": round(decision.extent_px, 2) if decision else None,
            "model": ("+".join(decision.route) if params["auto"] and decision else chain)
            if record.restored
            else "",
            "motion_psf": _psf_text(decision.psf) if record.restored and decision else "",
        }
        for name in MEASURES:
            row[f"{name}_before"] = before[name] if before else None
            row[f"{name}_after"] = after[name] if after else None
        rows.append(row)
    return rows


def _psf_text(psf: tuple[float, float] | None) -> str:
    """A known motion PSF as the tile table writes it ("15 px along x"), else empty."""
    if psf is None:
        return ""
    length, along_x = psf
    return f"{length:g} px along {'x' if along_x else 'y'}"
