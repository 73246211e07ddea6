"""The built-in hook ``nuclei-count``: nuclei before and after restoration, density, DAB share."""

from __future__ import annotations

from typing import Any

import numpy as np

from workers.engine import nuclei
from workers.engine.geometry import Box

FLUORESCENCE_GREY = 100  # median grey level of tissue below which the background is dark
COUNT_SCHEMA = {
    "type": "object",
    "properties": {
        "count": {"type": "integer"},
        "density_per_mm2": {"type": ["number", "null"]},
        "dab_positive_share": {"type": ["number", "null"]},
    },
}


class NucleiCount:
    """Counts nuclei (haematoxylin, or the brightest channel on a dark background)."""

    name = "nuclei-count"
    version = "1.0.0"
    result_schema = {
        "type": "object",
        "properties": {
            "before": COUNT_SCHEMA,
            "after": COUNT_SCHEMA,
            "change": {"type": "integer", "description": "after minus before"},
            "change_share": {"type": ["number", "null"], "description": "change / before"},
            "tissue_area_mm2": {
                "type": ["number", "null"],
                "description": "null when the slide gives no pixel size (densities null too)",
            },
        },
    }

    def calibrate(self, samples: list[np.ndarray], mpp: float | None) -> dict[str, Any]:
        """Brightfield or fluorescence, the slide's signal threshold, the nuclei's radius.

        Fluorescence: a dark background. The radius is measured on the samples when the
        slide gives no pixel size, else a typical nucleus's.
        """
        grey = np.concatenate([s[..., :3].mean(axis=2).ravel() for s in samples])
        fluorescence = float(np.median(grey)) < FLUORESCENCE_GREY
        threshold = nuclei.signal_threshold(samples, mpp, fluorescence)
        radius = nuclei.NUCLEUS_RADIUS_UM
        if mpp is None:  # nuclei could be any size in pixels: measure them
            radius = nuclei.typical_radius_um(samples, threshold, fluorescence, mpp)
        return {"fluorescence": fluorescence, "threshold": threshold, "radius_um": radius}

    def measure(
        self, pixels: np.ndarray, core: Box, mpp: float | None, calibration: dict[str, Any]
    ) -> dict[str, Any]:
        """Nuclei whose centroid lies in the core: count, DAB-positive count, centroids."""
        found = nuclei.detect(
            pixels,
            mpp,
            fluorescence=bool(calibration.get("fluorescence", False)),
            threshold=calibration.get("threshold"),
            radius_um=calibration.get("radius_um", nuclei.NUCLEUS_RADIUS_UM),
        )
        x, y = found.centroids[:, 0], found.centroids[:, 1]
        inside = (x >= core.x) & (x < core.right) & (y >= core.y) & (y < core.bottom)
        centroids = found.centroids[inside] - (core.x, core.y)
        return {
            "count": int(inside.sum()),
            "dab_positive": int(found.dab_positive[inside].sum()),
            "centroids": np.round(centroids, 1).tolist(),
        }

    def reduce(
        self, before: list[dict[str, Any]], after: list[dict[str, Any]], area_um2: float | None
    ) -> dict[str, Any]:
        """Counts before and after, densities, the change and the DAB-positive share."""
        area_mm2 = area_um2 / 1e6 if area_um2 else None
        sides = {"before": _totals(before, area_mm2), "after": _totals(after, area_mm2)}
        change = sides["after"]["count"] - sides["before"]["count"]
        return {
            **sides,
            "change": change,
            "change_share": change / sides["before"]["count"] if sides["before"]["count"] else None,
            "tissue_area_mm2": area_mm2,
        }

    def tile_columns(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """Nuclei counted in the tile before and after restoration."""
        return {"nuclei_before": before["count"], "nuclei_after": after["count"]}


def _totals(tiles: list[dict[str, Any]], area_mm2: float | None) -> dict[str, Any]:
    count = sum(t["count"] for t in tiles)
    positive = sum(t["dab_positive"] for t in tiles)
    return {
        "count": count,
        "density_per_mm2": count / area_mm2 if area_mm2 else None,
        "dab_positive_share": positive / count if count else None,
    }
