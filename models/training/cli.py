"""Command-line entry points behind ``python -m models.train`` and ``python -m models.evaluate``."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from models.training.tasks import TASKS

DEFAULT_DATA_ROOT = Path("../shared/data")


def _default_data(task: str) -> list[Path]:
    return [DEFAULT_DATA_ROOT / d for d in TASKS[task].data]


def _steps(text: str) -> int | None:
    """``--steps``: a positive count, or ``auto`` (None) to fit the schedule to --minutes."""
    if text == "auto":
        return None
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError("--steps must be positive or 'auto'")
    return count


def train_main(argv: list[str] | None = None) -> None:
    """Parse arguments and run :func:`models.training.trainer.train`."""
    from models.training.losses import FREQUENCY_WEIGHT, SSIM_WEIGHT
    from models.training.trainer import TrainOptions, train

    parser = argparse.ArgumentParser(prog="python -m models.train", description=__doc__)
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--data", nargs="+", type=Path, help="folders/files of sharp images")
    parser.add_argument("--out", type=Path, help="model folder (default models/zoo/<task>)")
    parser.add_argument("--work-dir", type=Path, help="resumable state (default ~/.cache/...)")
    parser.add_argument(
        "--steps",
        type=_steps,
        default=2000,
        help="supervised steps (the LR schedule's length); 'auto' with --minutes: as many as "
        "fit, at the step rate timed during warm-up",
    )
    parser.add_argument("--minutes", type=float, help="wall-clock budget; stops early")
    parser.add_argument("--adversarial-steps", type=int, default=0, help="PatchGAN stage steps")
    parser.add_argument("--adversarial-weight", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--crop", type=int, help="training crop side in output pixels")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--resume", action="store_true", help="continue from --work-dir state")
    parser.add_argument("--init-from", type=Path, help="checkpoint.pt to fine-tune from")
    parser.add_argument(
        "--freeze", nargs="+", default=[], help="parameter-name prefixes to keep fixed (estimator)"
    )
    parser.add_argument(
        "--add-blocks",
        type=int,
        default=0,
        help="with --init-from an srresnet checkpoint: add residual blocks (start as identity)",
    )
    parser.add_argument(
        "--ssim-weight",
        type=float,
        default=SSIM_WEIGHT,
        help="generators: weight of the (1 - SSIM) loss term beside L1",
    )
    parser.add_argument(
        "--frequency-weight",
        type=float,
        default=FREQUENCY_WEIGHT,
        help="generators: weight of the L1 of spectrum magnitudes beside L1",
    )
    parser.add_argument(
        "--ema",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="save and export an exponential moving average of the weights, e.g. 0.999",
    )
    parser.add_argument("--held-out-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--device", default="cpu", help="torch device for the network, e.g. cuda (not bit-exact)"
    )
    parser.add_argument(
        "--loader-workers", type=int, default=0, help="processes making batches ahead (GPU)"
    )
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--no-export", action="store_true")
    args = parser.parse_args(argv)
    argv_list = sys.argv[1:] if argv is None else argv
    options = TrainOptions(
        data=args.data or _default_data(args.task),
        out=args.out or Path("models/zoo") / args.task,
        work_dir=args.work_dir or Path.home() / ".cache/slide-restore/runs" / args.task,
        steps=args.steps,
        minutes=args.minutes,
        adversarial_steps=args.adversarial_steps,
        adversarial_weight=args.adversarial_weight,
        seed=args.seed,
        batch=args.batch,
        lr=args.lr,
        resume=args.resume,
        init_from=args.init_from,
        freeze=args.freeze,
        add_blocks=args.add_blocks,
        ssim_weight=args.ssim_weight,
        frequency_weight=args.frequency_weight,
        ema_decay=args.ema,
        held_out_fraction=args.held_out_fraction,
        threads=args.threads,
        device=args.device,
        loader_workers=args.loader_workers,
        log_every=args.log_every,
        export=not args.no_export,
        command="python -m models.train " + shlex.join(argv_list),
    )
    config = TASKS[args.task]
    if args.crop:
        config = dataclasses.replace(config, crop_px=args.crop)
    train(config, options)


def evaluate_main(argv: list[str] | None = None) -> None:
    """Parse arguments and evaluate one or all shipped models on their held-out split."""
    from models.training.evaluation import (
        evaluate_task,
        real_defocus_check,
        real_defocus_votes,
    )

    parser = argparse.ArgumentParser(prog="python -m models.evaluate")
    parser.add_argument("--task", nargs="+", default=["all"], help="task names or 'all'")
    parser.add_argument("--data", nargs="+", type=Path, help="image folders (default per task)")
    parser.add_argument("--zoo", type=Path, default=Path("models/zoo"))
    parser.add_argument("--reports", type=Path, default=Path("models/training/reports"))
    parser.add_argument("--held-out-fraction", type=float, default=0.2)
    parser.add_argument(
        "--real-defocus",
        type=Path,
        default=DEFAULT_DATA_ROOT / "focus/bbbc006_defocus/z00",
        help="real out-of-focus images for the no-reference check of deblur-defocus",
    )
    args = parser.parse_args(argv)
    names = sorted(TASKS) if args.task == ["all"] else args.task
    for name in names:
        model_dir = args.zoo / name
        if not (model_dir / "model.onnx").exists():
            print(f"skip {name}: no {model_dir / 'model.onnx'}")
            continue
        extra = {}
        if args.real_defocus.exists() and name in ("deblur-defocus", "blur-classifier"):
            from models.training.data import discover_images

            real = discover_images([args.real_defocus])
            if name == "deblur-defocus":
                args.reports.mkdir(parents=True, exist_ok=True)
                example = args.reports / f"{name}-real-defocus.png"
                result = real_defocus_check(model_dir, real, example)
            else:
                result = real_defocus_votes(model_dir, real)
            extra["real_defocus"] = {"folder": str(args.real_defocus), **result}
        data = args.data or _default_data(name)
        evaluate_task(TASKS[name], data, model_dir, args.reports, args.held_out_fraction, extra)


def compare_main(argv: list[str] | None = None) -> None:
    """Parse arguments and compare model folders on training-split images."""
    import json

    from models.training.comparison import compare, format_comparison
    from models.training.data import ImagePool, discover_images, split_paths

    parser = argparse.ArgumentParser(prog="python -m models.compare")
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("models", nargs="+", type=Path, help="model folders (with model.onnx)")
    parser.add_argument("--data", nargs="+", type=Path, help="image folders (default per task)")
    parser.add_argument("--images", type=int, default=6, help="training-split images to use")
    parser.add_argument("--held-out-fraction", type=float, default=0.2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    config = TASKS[args.task]
    missing = [str(d) for d in args.models if not (d / "model.onnx").exists()]
    if missing:
        parser.error(f"no model.onnx in {', '.join(missing)}")
    data = args.data or _default_data(args.task)
    train_paths, _ = split_paths(discover_images(data), args.held_out_fraction)
    pool = ImagePool.load(
        train_paths, config.channels, config.crop_px + 2 * config.margin_px, config.min_tissue
    )
    report = compare(config, args.models, pool, data, args.images)
    print(format_comparison(report, config.reference))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def export_main(argv: list[str] | None = None) -> None:
    """Parse arguments and export a checkpoint into a model folder."""
    from models.training.export import export_checkpoint

    parser = argparse.ArgumentParser(prog="python -m models.export", description=__doc__)
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--checkpoint", type=Path, help="default: the model folder's own")
    parser.add_argument("--out", type=Path, help="model folder (default models/zoo/<task>)")
    parser.add_argument("--version", help="default: patch + 1 (same weights) or minor + 1")
    parser.add_argument("--note", default="", help="why this run ships, for the record")
    parser.add_argument(
        "--psf-graph",
        action="store_true",
        help="only add the known-PSF graph of the folder's own checkpoint (motion models)",
    )
    args = parser.parse_args(argv)
    out = args.out or Path("models/zoo") / args.task
    if args.psf_graph:
        from models.training.export import add_psf_graph

        graph = add_psf_graph(out).psf_graph
        print(f"{out / graph.file} (sha256 {graph.sha256[:12]})" if graph else "no graph")
        return
    checkpoint = args.checkpoint or out / "checkpoint.pt"
    if not checkpoint.exists():
        parser.error(f"no checkpoint at {checkpoint}")
    manifest = export_checkpoint(TASKS[args.task], checkpoint, out, args.version, args.note)
    print(
        f"{manifest.name} {manifest.version} -> {out} (sha256 {manifest.sha256[:12]}, "
        f"{manifest.throughput_mpx_per_s} MP/s)"
    )
