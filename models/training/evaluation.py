"""Held-out evaluation of shipped ONNX models against the degraded input and classical baselines.

Runs with ONNX Runtime only (no torch). Baseline parameters are tuned on a few images of the
training split, never on the held-out split.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from models.manifest import BLUR_CLASSES, load_manifest, write_manifest
from models.runtime import open_session
from models.training import baselines
from models.training.data import MIN_CROP_STD, ImagePool, discover_images, split_paths
from models.training.metrics import full_reference, no_reference
from models.training.tasks import BlurParams, Params, TaskConfig, VideoRateParams

EVAL_SEED = 20261122
MAX_SIDE = 1024
TUNE_IMAGES = 6
TUNE_SIDE = 256
RL_ITERATIONS = (10, 20, 40, 80)
WIENER_BALANCES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)
UNSHARP = [(s, a) for s in (1.0, 2.0, 4.0) for a in (0.25, 0.5, 1.0, 2.0, 4.0)]
SMOOTH_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0)


def run_session(sess: Any, image: np.ndarray) -> np.ndarray:
    """Run a generator on one ``(H, W, C)`` image; returns ``(H*s, W*s, C)``."""
    x = image.transpose(2, 0, 1)[None].astype(np.float32)
    return sess.run(None, {"image": x})[0][0].transpose(1, 2, 0)


def _fit(image: np.ndarray, multiple: int, max_side: int = MAX_SIDE) -> np.ndarray:
    """Centre-crop to sides that are multiples of ``multiple`` and at most ``max_side``."""
    h = min(image.shape[0], max_side) // multiple * multiple
    w = min(image.shape[1], max_side) // multiple * multiple
    y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    return image[y : y + h, x : x + w]


def tuning_images(
    config: TaskConfig, pool: ImagePool, side: int = TUNE_SIDE, count: int = TUNE_IMAGES
) -> list[np.ndarray]:
    """Every n-th training-split image, centre-cropped to ``side``: for choices, never held-out."""
    return [_fit(im, 8 * config.scale, side) for im in pool.every_nth(count).images]


def _upsample_offset(params: Params) -> float:
    return (params.factor - 1) / 2 if isinstance(params, VideoRateParams) else 0.0


def candidates(params: Params, degraded: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Every baseline output for every parameter of its grid: ``{method: {setting: image}}``."""
    out: dict[str, dict[str, np.ndarray]] = {}
    if isinstance(params, BlurParams):
        psf = params.psf()
        out["wiener"] = {
            f"balance={b:g}": baselines.wiener(degraded, psf, b) for b in WIENER_BALANCES
        }
        out["richardson_lucy"] = {
            f"iterations={i}": e
            for i, e in baselines.richardson_lucy_steps(degraded, psf, max(RL_ITERATIONS))
            if i in RL_ITERATIONS
        }
        out["unsharp"] = {
            f"sigma={s:g},amount={a:g}": baselines.unsharp_mask(degraded, s, a) for s, a in UNSHARP
        }
    else:
        up = baselines.cubic_upsample(degraded, params.factor, _upsample_offset(params))
        out["bicubic"] = {"": up}
        out["bicubic+unsharp"] = {
            f"sigma={s:g},amount={a:g}": baselines.unsharp_mask(up, s, a) for s, a in UNSHARP
        }
        out["bicubic+gaussian"] = {
            f"sigma={s:g}": baselines.gaussian_smooth(up, s) for s in SMOOTH_SIGMAS
        }
    return out


def input_view(params: Params, degraded: np.ndarray) -> np.ndarray:
    """The degraded input at the output size (nearest-neighbour for low-resolution inputs)."""
    if isinstance(params, BlurParams):
        return degraded
    return np.repeat(np.repeat(degraded, params.factor, axis=0), params.factor, axis=1)


def tune_baselines(params: Params, images: list[np.ndarray], seed: int) -> dict[str, str]:
    """Pick each baseline's setting with the best mean PSNR on training-split images."""
    scores: dict[str, dict[str, list[float]]] = {}
    for k, image in enumerate(images):
        rng = np.random.default_rng([seed, 7, k])
        degraded = params.apply(image, rng)
        for method, outputs in candidates(params, degraded).items():
            for setting, result in outputs.items():
                score = full_reference(result, image)["psnr"]
                scores.setdefault(method, {}).setdefault(setting, []).append(score)
    return {m: max(s, key=lambda k: float(np.mean(s[k]))) for m, s in scores.items()}


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over images, rounded to 4 places."""
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}


def evaluate_generator(
    config: TaskConfig,
    model_dir: Path,
    held_out: ImagePool,
    tune_pool: ImagePool,
    examples_png: Path | None = None,
) -> dict[str, Any]:
    """Per level: PSNR/SSIM/PCC of input, tuned baselines and the ONNX model on held-out images."""
    sess = open_session(model_dir / "model.onnx", threads=2)
    tune_images = tuning_images(config, tune_pool)
    images = [_fit(im, 8 * config.scale) for im in held_out.images]
    levels: dict[str, Any] = {}
    example: dict[str, np.ndarray] = {}
    for li, (level, params) in enumerate(config.levels.items()):
        settings = tune_baselines(params, tune_images, EVAL_SEED)
        rows: dict[str, list[dict[str, float]]] = {}
        for k, image in enumerate(images):
            rng = np.random.default_rng([EVAL_SEED, li, k])
            degraded = params.apply(image, rng)
            outputs = {"input": input_view(params, degraded)}
            for method, results in candidates(params, degraded).items():
                outputs[method] = results[settings[method]]
            outputs["model"] = run_session(sess, degraded)
            for method, result in outputs.items():
                rows.setdefault(method, []).append(full_reference(result, image))
            if level == config.reference and k == 0:
                example = {"sharp": image, **outputs}
        summary = {m: summarise(r) for m, r in rows.items()}
        best = max(
            (m for m in summary if m not in ("input", "model")), key=lambda m: summary[m]["psnr"]
        )
        levels[level] = {
            "params": asdict(params),
            "baseline_settings": settings,
            "metrics": summary,
            "best_baseline": best,
            "model_minus_best": {
                k: round(summary["model"][k] - summary[best][k], 4) for k in ("psnr", "ssim", "pcc")
            },
        }
    if examples_png is not None and example:
        _save_examples(example, examples_png, f"{config.name}: {config.reference}")
    ref = levels[config.reference]
    gain = ref["model_minus_best"]
    return {
        "task": config.name,
        "held_out_images": [str(p) for p in held_out.paths],
        "levels": levels,
        "reference_level": config.reference,
        "targets": {"psnr_gain_db": 1.0, "ssim_gain": 0.03},
        "meets_target": bool(gain["psnr"] >= 1.0 and gain["ssim"] >= 0.03),
    }


def evaluate_classifier(
    config: TaskConfig,
    model_dir: Path,
    held_out: ImagePool,
    sources: list[Path] | None = None,
    samples_per_tile: int = 4,
) -> dict[str, Any]:
    """Confusion matrix, accuracy and extent error on held-out tiles with synthesised blur.

    With ``sources`` (the data folders), the accuracy is also given per folder.
    """
    sess = open_session(model_dir / "model.onnx", threads=2)
    tile, m = config.tile_px, config.margin_px
    confusion = np.zeros((4, 4), dtype=int)
    extent_errors: list[float] = []
    by_source: dict[str, list[int]] = {}
    for k, (path, image) in enumerate(zip(held_out.paths, held_out.images, strict=True)):
        rng = np.random.default_rng([EVAL_SEED, 99, k])
        batch, labels, extents = [], [], []
        for y in range(0, image.shape[0] - tile - 2 * m + 1, tile):
            for x in range(0, image.shape[1] - tile - 2 * m + 1, tile):
                crop = image[y : y + tile + 2 * m, x : x + tile + 2 * m]
                if crop[m:-m, m:-m].std() < MIN_CROP_STD:
                    continue
                for _ in range(samples_per_tile):
                    params, label = config.sample(rng)
                    blurred = params.apply(crop, rng)[m:-m, m:-m]
                    batch.append(blurred.transpose(2, 0, 1))
                    labels.append(label)
                    extents.append(_true_extent(params, label))
        if not batch:
            continue
        logits, extent = sess.run(None, {"image": np.stack(batch).astype(np.float32)})
        for t, p in zip(labels, logits.argmax(axis=1), strict=True):
            confusion[t, p] += 1
        extent_errors += list(np.abs(extent[:, 0] - np.array(extents)))
        source = _source_of(path, sources or [])
        right = int(np.sum(logits.argmax(axis=1) == np.array(labels)))
        counts = by_source.setdefault(source, [0, 0])
        counts[0], counts[1] = counts[0] + right, counts[1] + len(labels)
    accuracy = float(np.trace(confusion) / confusion.sum())
    return {
        "task": config.name,
        "classes": list(BLUR_CLASSES),
        "held_out_images": [str(p) for p in held_out.paths],
        "tiles": int(confusion.sum()),
        "confusion_matrix": confusion.tolist(),
        "accuracy": round(accuracy, 4),
        "per_class_recall": [
            round(float(confusion[i, i] / max(1, confusion[i].sum())), 4) for i in range(4)
        ],
        "extent_mae_px": round(float(np.mean(extent_errors)), 3),
        "accuracy_by_source": {
            source: {"tiles": n, "accuracy": round(right / n, 4)}
            for source, (right, n) in by_source.items()
        },
        "targets": {"accuracy": 0.97},
        "meets_target": accuracy >= 0.97,
    }


def _source_of(path: Path, sources: list[Path]) -> str:
    """The data folder ``path`` lies in (``other`` if none)."""
    for source in sources:
        if path.is_relative_to(source):
            return str(source)
    return "other"


def _true_extent(params: BlurParams, label: int) -> float:
    from models.training.degradations import psf_extent_px

    return psf_extent_px(params.psf()) if label else 0.0


def _real_images(paths: list[Path]) -> list[np.ndarray]:
    from models.training.data import load_image

    return [_fit(load_image(path, 3), 8) for path in paths]


def real_defocus_check(
    model_dir: Path, paths: list[Path], example_path: Path | None = None
) -> dict[str, Any]:
    """No-reference sharpness of real defocused images before and after the model.

    These figures also rise when the model only amplifies noise, so ``example_path`` gets
    the first image before and after, to look at.
    """
    sess = open_session(model_dir / "model.onnx", threads=2)
    before, after = [], []
    for k, image in enumerate(_real_images(paths)):
        restored = np.clip(run_session(sess, image), 0, 1)
        before.append(no_reference(image))
        after.append(no_reference(restored))
        if k == 0 and example_path is not None:
            window = _around_brightest(image, 160)
            example = {"input": image[window], "model": restored[window]}
            _save_examples(example, example_path, "real defocus, first image")
    return {"images": len(paths), "before": summarise(before), "after": summarise(after)}


def _around_brightest(image: np.ndarray, size: int) -> tuple[slice, slice]:
    """A ``size`` px window centred where the image is brightest on average."""
    from scipy.ndimage import uniform_filter

    grey = uniform_filter(image.mean(axis=2), size // 4)
    cy, cx = np.unravel_index(int(np.argmax(grey)), grey.shape)
    y = int(np.clip(cy - size // 2, 0, max(0, image.shape[0] - size)))
    x = int(np.clip(cx - size // 2, 0, max(0, image.shape[1] - size)))
    return slice(y, y + size), slice(x, x + size)


def real_defocus_votes(classifier_dir: Path, paths: list[Path], tile: int = 128) -> dict:
    """How the classifier labels 128 px tiles of real defocused images (should be defocus).

    Tiles with a standard deviation below ``MIN_CROP_STD`` (empty background) are left
    out, as in training and in :func:`evaluate_classifier`.
    """
    sess = open_session(classifier_dir / "model.onnx", threads=2)
    votes = np.zeros(4, dtype=int)
    skipped = 0
    for image in _real_images(paths):
        tiles = [
            image[y : y + tile, x : x + tile].transpose(2, 0, 1)
            for y in range(0, image.shape[0] - tile + 1, tile)
            for x in range(0, image.shape[1] - tile + 1, tile)
        ]
        textured = [t for t in tiles if t.std() >= MIN_CROP_STD]
        skipped += len(tiles) - len(textured)
        if textured:
            logits, _ = sess.run(None, {"image": np.stack(textured).astype(np.float32)})
            votes += np.bincount(logits.argmax(axis=1), minlength=4)
    return {
        "images": len(paths),
        "votes": dict(zip(BLUR_CLASSES, votes.tolist(), strict=True)),
        "background_tiles_skipped": skipped,
    }


def _save_examples(example: dict[str, np.ndarray], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(example)
    fig, axes = plt.subplots(1, len(names), figsize=(2.4 * len(names), 2.8))
    for ax, name in zip(axes, names, strict=True):
        crop = np.clip(example[name], 0, 1)
        h, w = crop.shape[:2]
        crop = crop[h // 2 - 80 : h // 2 + 80, w // 2 - 80 : w // 2 + 80]
        ax.imshow(crop.squeeze(), cmap="gray" if crop.shape[2] == 1 else None, vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def plot_levels(report: dict[str, Any], path: Path) -> None:
    """Bar chart of PSNR and SSIM per level for input, best baseline and model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(report["levels"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
        for j, who in enumerate(("input", "best baseline", "model")):
            vals = []
            for lv in levels:
                entry = report["levels"][lv]
                key = entry["best_baseline"] if who == "best baseline" else who
                vals.append(entry["metrics"][key][metric])
            ax.bar(np.arange(len(levels)) + 0.27 * (j - 1), vals, 0.27, label=who)
        ax.set_xticks(np.arange(len(levels)), levels, fontsize=7, rotation=15)
        ax.set_ylabel(metric.upper())
        if metric == "ssim":
            ax.set_ylim(0, 1)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{report['task']} (held-out)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def plot_confusion(report: dict[str, Any], path: Path) -> None:
    """Confusion-matrix heat map of the classifier."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(report["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(cm, cmap="Blues")
    for i in range(4):
        for j in range(4):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(4), report["classes"], fontsize=7)
    ax.set_yticks(range(4), report["classes"], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {report['accuracy']:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def format_table(report: dict[str, Any]) -> str:
    """Markdown table: per level, input vs best baseline vs model (PSNR / SSIM / PCC)."""
    if "confusion_matrix" in report:
        rows = ["| true \\ predicted | " + " | ".join(report["classes"]) + " |"]
        rows.append("|---" * 5 + "|")
        for name, row in zip(report["classes"], report["confusion_matrix"], strict=True):
            rows.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
        rows.append(
            f"\naccuracy {report['accuracy']:.4f} on {report['tiles']} held-out tiles; "
            f"extent MAE {report['extent_mae_px']} px"
        )
        for source, entry in report.get("accuracy_by_source", {}).items():
            rows.append(f"- `{source}`: {entry['accuracy']:.4f} on {entry['tiles']} tiles")
        return "\n".join(rows)
    head = "| level | input PSNR / SSIM / PCC | best baseline | baseline PSNR / SSIM / PCC "
    head += "| model PSNR / SSIM / PCC | model - best (dB / SSIM) |"
    rows = [head, "|---" * 6 + "|"]
    for level, entry in report["levels"].items():
        m, best = entry["metrics"], entry["best_baseline"]
        setting = entry["baseline_settings"][best]

        def fmt(v: dict[str, float]) -> str:
            return f"{v['psnr']:.2f} / {v['ssim']:.3f} / {v['pcc']:.3f}"

        d = entry["model_minus_best"]
        star = " **(reference)**" if level == report["reference_level"] else ""
        rows.append(
            f"| {level}{star} | {fmt(m['input'])} | {best} {setting} | {fmt(m[best])} "
            f"| {fmt(m['model'])} | {d['psnr']:+.2f} / {d['ssim']:+.3f} |"
        )
    return "\n".join(rows)


def record_in_manifest(model_dir: Path, report: dict[str, Any]) -> None:
    """Copy the headline held-out metrics into the model's manifest (sha256 unchanged)."""
    manifest = load_manifest(model_dir / "manifest.json")
    if "confusion_matrix" in report:
        metrics = {
            k: report[k]
            for k in (
                "accuracy",
                "accuracy_by_source",
                "per_class_recall",
                "confusion_matrix",
                "extent_mae_px",
                "tiles",
            )
            if k in report
        }
    else:
        ref = report["levels"][report["reference_level"]]
        metrics = {
            "reference_level": report["reference_level"],
            "held_out": {
                lv: {
                    "input": e["metrics"]["input"],
                    "model": e["metrics"]["model"],
                    "best_baseline": {e["best_baseline"]: e["metrics"][e["best_baseline"]]},
                }
                for lv, e in report["levels"].items()
            },
            "model_minus_best_baseline": ref["model_minus_best"],
        }
    metrics["meets_target"] = report["meets_target"]
    metrics["held_out_images"] = len(report["held_out_images"])
    metrics["report"] = f"models/training/reports/{report['task']}.json"
    if "real_defocus" in report:
        metrics["real_defocus_bbbc006"] = report["real_defocus"]
    manifest.metrics = metrics
    write_manifest(manifest, model_dir)


def evaluate_task(
    config: TaskConfig,
    data: list[Path],
    model_dir: Path,
    report_dir: Path,
    held_out_fraction: float = 0.2,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate one model, write JSON + PNG + markdown under ``report_dir``, update manifest."""
    report_dir.mkdir(parents=True, exist_ok=True)
    train_paths, held_paths = split_paths(discover_images(data), held_out_fraction)
    min_side = config.crop_px + 2 * config.margin_px
    held = ImagePool.load(held_paths, config.channels, min_side, config.min_tissue)
    if config.kind == "classifier":
        report = evaluate_classifier(config, model_dir, held, data)
        plot_confusion(report, report_dir / f"{config.name}.png")
    else:
        tune = ImagePool.load(train_paths, config.channels, min_side, config.min_tissue)
        report = evaluate_generator(
            config, model_dir, held, tune, report_dir / f"{config.name}-examples.png"
        )
        plot_levels(report, report_dir / f"{config.name}.png")
    report.update(extra or {})
    (report_dir / f"{config.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = format_table(report)
    (report_dir / f"{config.name}.md").write_text(table + "\n")
    record_in_manifest(model_dir, report)
    print(f"## {config.name}\n{table}\n")
    return report
