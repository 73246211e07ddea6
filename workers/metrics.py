"""What a finished job found and did, reduced from its tile table and blur map.

The schema is documented in the README (``metrics`` of ``GET /v1/jobs/{id}``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from scipy import ndimage

from workers.engine.blurmap import BACKGROUND, CLASS_NAMES, IN_FOCUS, BlurMap, CellGrid
from workers.engine.sharpness import MEASURES

WORST_REGIONS = 10
ROUTE_CODES = {"": 0, "deblur-defocus": 1, "deblur-motion": 2, "deblur-motion+deblur-defocus": 3}


def tile_counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Tiles per blur class and per model applied."""
    classes = Counter(row["blur_class"] for row in rows if row["blur_class"])
    models = Counter(row["model"] or "none" for row in rows)
    return {
        "total": len(rows),
        "background": classes.get("background", 0),
        "by_class": {name: classes.get(name, 0) for name in CLASS_NAMES[1:]},
        "by_model": dict(sorted(models.items())),
    }


def worst_regions(
    blur_map: BlurMap, cells: CellGrid, count: int = WORST_REGIONS
) -> list[dict[str, Any]]:
    """The largest connected blurred areas: level-0 box, dominant class, mean confidence."""
    components, _ = ndimage.label(blur_map.classes > IN_FOCUS, structure=np.ones((3, 3)))
    regions: list[dict[str, Any]] = []
    for index, where in enumerate(ndimage.find_objects(components), start=1):
        if where is None:
            continue
        inside = components[where] == index
        classes = blur_map.classes[where][inside]
        first = cells.cell_box(where[0].start, where[1].start)
        last = cells.cell_box(where[0].stop - 1, where[1].stop - 1)
        regions.append(
            {
                "box": [first.x, first.y, last.right - first.x, last.bottom - first.y],
                "blur_class": CLASS_NAMES[int(np.bincount(classes).argmax())],
                "confidence": round(float(blur_map.confidence[where][inside].mean()), 4),
                "cells": int(inside.sum()),
            }
        )
    regions.sort(key=lambda r: r["cells"] * r["confidence"], reverse=True)
    return regions[:count]


def quality_control(blur_map: BlurMap, cells: CellGrid, rescan_share: float) -> dict[str, Any]:
    """Share of tissue per blur class, the worst regions, and whether to rescan."""
    tissue = blur_map.classes != BACKGROUND
    total = max(int(tissue.sum()), 1)
    shares = {
        name: round(float((blur_map.classes == value).sum()) / total, 4)
        for value, name in enumerate(CLASS_NAMES)
        if value != BACKGROUND
    }
    blurred = 1.0 - shares["in_focus"] if tissue.any() else 0.0
    return {
        "tissue_cells": int(tissue.sum()),
        "cell_px": cells.cell_px,
        "share": shares,
        "blurred_share": round(blurred, 4),
        "worst_regions": worst_regions(blur_map, cells),
        "rescan_threshold": rescan_share,
        "rescan_recommended": blurred > rescan_share,
    }


def slide_sharpness(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean sharpness of the tissue tiles before and after restoration."""
    tissue = [r for r in rows if r.get(f"{MEASURES[0]}_before") is not None]
    result: dict[str, Any] = {"tiles": len(tissue)}
    for when in ("before", "after"):
        result[when] = {
            m: float(np.mean([r[f"{m}_{when}"] for r in tissue])) if tissue else None
            for m in MEASURES
        }
    return result


def restored_cells(rows: list[dict[str, Any]], cells: CellGrid) -> tuple[np.ndarray, list[str]]:
    """Per cell, the code of the models that ran on the tile covering its centre, and names."""
    routes = sorted({r["model"] for r in rows} - set(ROUTE_CODES))
    codes = {**ROUTE_CODES, **{name: 4 + i for i, name in enumerate(routes)}}
    values = np.zeros(cells.shape, dtype=np.uint8)
    half = cells.cell_px / 2
    for row in rows:
        if not row["model"]:
            continue
        rel_x, rel_y = row["x"] - cells.area.x, row["y"] - cells.area.y
        c0 = max(int(np.ceil((rel_x - half) / cells.cell_px)), 0)
        r0 = max(int(np.ceil((rel_y - half) / cells.cell_px)), 0)
        c1 = int(np.ceil((rel_x + row["width"] - half) / cells.cell_px))
        r1 = int(np.ceil((rel_y + row["height"] - half) / cells.cell_px))
        values[r0:r1, c0:c1] = codes[row["model"]]
    names = ["none", *sorted(codes, key=lambda k: codes[k])[1:]]
    return values, names
