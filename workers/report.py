"""The one-page HTML report of a finished job: verdict, class shares, sharpness, blur map.

Self-contained (charts are inline PNGs, no script, no external link), so it opens offline
and can be saved or printed as it is.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from workers.engine import charts
from workers.engine.blurmap import CLASS_COLOURS, CLASS_NAMES
from workers.engine.blurmap_image import overlay_rgba
from workers.engine.labels import read_label
from workers.engine.omezarr import OmeZarrReader
from workers.engine.sharpness import MEASURES

THUMBNAIL_PX = 640
BLUR_CLASSES = CLASS_NAMES[1:]
MEASURE_NAMES = {
    "laplacian_var": "Laplacian variance",
    "tenengrad": "Tenengrad",
    "hf_share": "high-frequency share",
}


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _thumbnail(output: Path) -> np.ndarray:
    reader = OmeZarrReader(output)
    sizes = reader.info.level_dimensions
    level = next((k for k, (w, h) in enumerate(sizes) if max(w, h) <= THUMBNAIL_PX), len(sizes) - 1)
    width, height = sizes[level]
    return reader.read_region((0, 0), level, (width, height))


def _blur_map_chart(output: Path, metrics: dict[str, Any], area: list[int]) -> str:
    """The output's thumbnail with the blurred cells coloured over it."""
    thumbnail = _thumbnail(output)
    classes = read_label(output, "blur")
    cell_px = metrics["qc"]["cell_px"]
    factor = thumbnail.shape[1] / area[2]
    layer = Image.fromarray(overlay_rgba(classes), mode="RGBA")
    stretched = (
        max(1, math.ceil(classes.shape[1] * cell_px * factor)),
        max(1, math.ceil(classes.shape[0] * cell_px * factor)),
    )
    cells = np.asarray(layer.resize(stretched, Image.Resampling.NEAREST))
    cells = cells[: thumbnail.shape[0], : thumbnail.shape[1]]
    png = charts.overlay_map(thumbnail, cells, "where the blur is (coloured: blurred)")
    return _img(png, "blur map over the output thumbnail")


def _class_chart(qc: dict[str, Any]) -> str:
    png = charts.bar_chart(
        "share of tissue by blur class",
        [n.replace("_", " ") for n in BLUR_CLASSES],
        {"share": [qc["share"][n] for n in BLUR_CLASSES]},
        {"share": (120, 120, 120)},
        percent=True,
        label_colours=[(150, 150, 150), *(c[:3] for c in CLASS_COLOURS[2:])],
    )
    return _img(png, "share of tissue by blur class")


def _sharpness_chart(sharpness: dict[str, Any]) -> str:
    before, after = sharpness["before"], sharpness["after"]
    if before[MEASURES[0]] is None:
        return "<p>No tissue tile to measure.</p>"
    ratio = {m: after[m] / before[m] if before[m] else 1.0 for m in MEASURES}
    png = charts.bar_chart(
        "sharpness of tissue, after / before (1 = unchanged)",
        [MEASURE_NAMES[m] for m in MEASURES],
        {"after / before": [ratio[m] for m in MEASURES]},
        {"after / before": (31, 119, 220)},
    )
    return _img(png, "sharpness after restoration relative to before")


def _rows(items: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in items)


def render(job: dict[str, Any], output: Path) -> str:
    """The report of a completed job with metrics."""
    metrics = job["metrics"]
    qc = metrics.get("qc")
    tiles = metrics["tiles"]
    parts = [f"<h1>Restoration report · job {html.escape(job['id'][:8])}</h1>"]
    model = "auto (blur-aware)" if job["params"]["auto"] else " + ".join(job["params"]["models"])
    if qc:
        verdict = "Rescan recommended" if qc["rescan_recommended"] else "Focus quality acceptable"
        css = "bad" if qc["rescan_recommended"] else "good"
        parts.append(
            f'<p class="verdict {css}">{verdict}: {qc["blurred_share"]:.0%} of the tissue is '
            f"blurred (threshold {qc['rescan_threshold']:.0%}).</p>"
        )
    restored = tiles["total"] - tiles["by_model"].get("none", 0)
    parts.append(
        "<table>"
        + _rows(
            [
                ("slide", job["slide_id"]),
                ("model", model),
                ("tiles restored", f"{restored} of {tiles['total']}"),
                *((f"  with {k}", str(v)) for k, v in tiles["by_model"].items() if k != "none"),
                ("time", f"{metrics['timings']['wall']:.0f} s"),
            ]
        )
        + "</table>"
    )
    if qc:
        parts.append('<div class="charts">')
        parts.append(_blur_map_chart(output, metrics, job["params"]["area"]))
        parts.append(_class_chart(qc))
        parts.append(_sharpness_chart(metrics["sharpness"]))
        parts.append("</div>")
        regions = [
            (
                f"x {r['box'][0]}, y {r['box'][1]}, {r['box'][2]} x {r['box'][3]} px",
                f"{r['blur_class'].replace('_', ' ')} (confidence {r['confidence']:.2f})",
            )
            for r in qc["worst_regions"]
        ]
        if regions:
            parts.append("<h2>Largest blurred areas (level-0 pixels)</h2>")
            parts.append("<table>" + _rows(regions) + "</table>")
    else:
        parts.append(_sharpness_chart(metrics["sharpness"]))
    parts.append(
        "<p class=note>Blur is found per cell of the slide by a classifier checked against the "
        "sharpness of the slide's own tissue; only blurred cells are restored, the rest is left "
        "exactly as scanned. Sharpness: grey-level detail relative to contrast (higher is "
        "sharper).</p>"
    )
    body = "\n".join(parts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Restoration report</title>
<link rel="icon" href="data:,">
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; }}
.verdict {{ font-size: 16px; padding: 8px 12px; border-radius: 4px; display: inline-block; }}
.good {{ background: #e3f4e6; }} .bad {{ background: #fde7d9; }}
table {{ border-collapse: collapse; margin: 8px 0; }}
th, td {{ text-align: left; padding: 3px 12px 3px 0; border-bottom: 1px solid #eee; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }}
.charts img {{ border: 1px solid #ddd; max-width: 100%; }}
.note {{ color: #666; max-width: 800px; }}
</style></head><body>
{body}
</body></html>
"""
