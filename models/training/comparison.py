"""Compare candidate model folders on training-split images, to choose what ships.

The held-out split is for the final report only (:mod:`models.training.evaluation`); a choice
between two trainings of one task (which to ship, which setting to keep) is made here, on
every n-th image of the training split, with the evaluation's degradation levels and seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.runtime import open_session
from models.training.data import ImagePool
from models.training.evaluation import (
    EVAL_SEED,
    evaluate_classifier,
    input_view,
    run_session,
    summarise,
    tuning_images,
)
from models.training.metrics import full_reference
from models.training.tasks import TaskConfig

COMPARE_SIDE = 512


def compare_generators(
    config: TaskConfig, model_dirs: list[Path], images: list[np.ndarray]
) -> dict[str, dict[str, dict[str, float]]]:
    """Per level, mean PSNR / SSIM / PCC of the degraded input and of each folder's model."""
    sessions = {str(d): open_session(d / "model.onnx", threads=2) for d in model_dirs}
    result: dict[str, dict[str, dict[str, float]]] = {}
    for li, (level, params) in enumerate(config.levels.items()):
        rows: dict[str, list[dict[str, float]]] = {}
        for k, image in enumerate(images):
            degraded = params.apply(image, np.random.default_rng([EVAL_SEED, li, k]))
            outputs = {"input": input_view(params, degraded)}
            outputs.update({name: run_session(s, degraded) for name, s in sessions.items()})
            for name, output in outputs.items():
                rows.setdefault(name, []).append(full_reference(output, image))
        result[level] = {name: summarise(r) for name, r in rows.items()}
    return result


def compare_classifiers(
    config: TaskConfig, model_dirs: list[Path], pool: ImagePool, sources: list[Path]
) -> dict[str, dict[str, Any]]:
    """Accuracy, per-source accuracy and extent error of each folder's classifier."""
    return {
        str(d): {
            k: v
            for k, v in evaluate_classifier(config, d, pool, sources).items()
            if k in ("tiles", "accuracy", "extent_mae_px", "accuracy_by_source")
        }
        for d in model_dirs
    }


def compare(
    config: TaskConfig, model_dirs: list[Path], pool: ImagePool, sources: list[Path], count: int
) -> dict[str, Any]:
    """Compare ``model_dirs`` on ``count`` images of ``pool`` (the training split)."""
    if config.kind == "classifier":
        chosen = pool.every_nth(count)
        return {"classifiers": compare_classifiers(config, model_dirs, chosen, sources)}
    images = tuning_images(config, pool, COMPARE_SIDE, count)
    return {"levels": compare_generators(config, model_dirs, images)}


def format_comparison(report: dict[str, Any], reference: str) -> str:
    """Markdown table: one row per level (or per classifier), one column per model."""
    if "classifiers" in report:
        rows = ["| model | tiles | accuracy | extent MAE (px) |", "|---|---|---|---|"]
        for name, entry in report["classifiers"].items():
            rows.append(
                f"| {name} | {entry['tiles']} | {entry['accuracy']:.4f} "
                f"| {entry['extent_mae_px']} |"
            )
        return "\n".join(rows)
    levels = report["levels"]
    names = list(next(iter(levels.values())))
    rows = ["| level | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for level, entry in levels.items():
        star = " (reference)" if level == reference else ""
        cells = [f"{entry[n]['psnr']:.2f} / {entry[n]['ssim']:.4f}" for n in names]
        rows.append(f"| {level}{star} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
