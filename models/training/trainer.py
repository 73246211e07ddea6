"""The training loop: seeded batches, L1 + SSIM + frequency loss, optional GAN stage, resume."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import multiprocessing.queues
import queue
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.process import BaseProcess
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from models.manifest import TrainingRecord
from models.training.data import ImagePool, discover_images, split_paths
from models.training.export import build_network, load_checkpoint, write_model_folder
from models.training.losses import (
    FREQUENCY_WEIGHT,
    SSIM_WEIGHT,
    classifier_loss,
    critic_loss,
    generator_adversarial,
    restoration_loss,
)
from models.training.networks import PatchCritic, SRResNet
from models.training.tasks import TaskConfig


@dataclass
class TrainOptions:
    """Knobs of one training run (the CLI maps onto these one to one)."""

    data: list[Path]
    out: Path
    work_dir: Path
    steps: int | None = 2000  # None: as many as fit in ``minutes`` (:class:`StepFit`)
    minutes: float | None = None
    adversarial_steps: int = 0
    adversarial_weight: float = 1e-3
    seed: int = 0
    batch: int | None = None
    lr: float | None = None
    resume: bool = False
    init_from: Path | None = None
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes kept fixed
    add_blocks: int = 0  # with init_from: residual blocks added to an srresnet checkpoint
    ssim_weight: float = SSIM_WEIGHT  # generators: loss = L1 + w (1 - SSIM) + frequency term
    frequency_weight: float = FREQUENCY_WEIGHT  # generators: weight of the spectrum L1 term
    ema_decay: float = 0.0  # > 0: save and export an exponential moving average of the weights
    held_out_fraction: float = 0.2
    threads: int = 2
    device: str = "cpu"  # or "cuda": batches are still made on the CPU
    loader_workers: int = 0  # processes making batches ahead (the same batches, in order)
    log_every: int = 50
    checkpoint_every_s: float = 120.0
    export: bool = True
    command: str = ""
    history: list[dict] = field(default_factory=list)


WARMUP_STEPS = 50


def _lr_at(step: int, total: int, base: float, warmup: int = WARMUP_STEPS) -> float:
    """Linear warm-up then cosine decay to 5 % of ``base`` at ``total`` steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * progress)))


def _batch(config: TaskConfig, pool: ImagePool, seed: int, size: int, step: int) -> dict:
    return config.make_batch(pool, np.random.default_rng([seed, step]), size)


class StepFit:
    """``--steps auto``: the schedule's length, fitted to the time budget during warm-up.

    The step rate is timed over the steps 10 to :data:`WARMUP_STEPS` after the loop starts
    (the learning rate of warm-up steps does not depend on the schedule's length), and the
    schedule then gets as many steps as fit, at that rate, into 97 % of the time left.
    """

    def __init__(self, first_step: int) -> None:
        self.timed_from, self.fitted_at = first_step + 10, first_step + WARMUP_STEPS
        self.clock = 0.0

    def after(self, step: int, elapsed_s: float, budget_s: float) -> int | None:
        """Call after each step; returns the schedule's length once it is known."""
        if step == self.timed_from:
            self.clock = elapsed_s
        if step < self.fitted_at:
            return None
        rate = (step - self.timed_from) / max(elapsed_s - self.clock, 1e-9)
        return step + max(1, int(rate * (budget_s - elapsed_s) * 0.97))


def batch_stream(
    config: TaskConfig, pool: ImagePool, seed: int, size: int, first: int, workers: int = 0
) -> Iterator[dict[str, np.ndarray]]:
    """Batches ``first, first + 1, ...``; batch *k* is made from ``default_rng([seed, k])``.

    With ``workers`` > 0, forked processes keep up to two batches each queued ahead of the
    one being trained on, so that a GPU is not kept waiting; the batches are the same. Closing
    the stream kills them (nothing they hold is needed any more, so nothing can hang).
    """
    if workers == 0:
        for step in itertools.count(first):
            yield _batch(config, pool, seed, size, step)
    context = multiprocessing.get_context("fork")
    queues = [context.Queue(maxsize=2) for _ in range(workers)]
    processes = [
        context.Process(
            target=_make_batches,
            args=(config, pool, seed, size, first + k, workers, batches),
            daemon=True,
        )
        for k, batches in enumerate(queues)
    ]
    for process in processes:
        process.start()
    try:
        for k in itertools.cycle(range(workers)):
            yield _receive(queues[k], processes[k])
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.join()


def _make_batches(
    config: TaskConfig,
    pool: ImagePool,
    seed: int,
    size: int,
    step: int,
    stride: int,
    out: multiprocessing.queues.Queue,
) -> None:
    """A loader process: batches ``step, step + stride, ...`` into ``out`` until killed."""
    try:
        while True:
            out.put(_batch(config, pool, seed, size, step))
            step += stride
    except Exception:
        out.put(traceback.format_exc())


def _receive(source: multiprocessing.queues.Queue, process: BaseProcess) -> dict:
    """The next batch from one loader process; its error, or its death, as RuntimeError."""
    while True:
        try:
            item = source.get(timeout=5.0)
        except queue.Empty:
            if not process.is_alive():
                raise RuntimeError(f"batch loader exited with code {process.exitcode}") from None
            continue
        if isinstance(item, str):
            raise RuntimeError(f"batch loader failed:\n{item}")
        return item


def freeze(model: nn.Module, prefixes: list[str]) -> None:
    """Keep the parameters whose names start with any of ``prefixes`` fixed.

    For example ``estimator`` keeps a deblurring model's PSF estimator as it is while its
    U-Net is fine-tuned. A prefix that names no parameter is an error (a typo would
    otherwise train everything).
    """
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise ValueError(f"--freeze {prefix}: no parameter name starts with it")
    for name, parameter in model.named_parameters():
        if any(name.startswith(prefix) for prefix in prefixes):
            parameter.requires_grad_(False)


def _state_path(options: TrainOptions) -> Path:
    return options.work_dir / "train_state.pt"


def training_data(config: TaskConfig, options: TrainOptions) -> tuple[ImagePool, str]:
    """Load the training split and describe the data (counts and the held-out rule)."""
    paths = discover_images(options.data)
    train_paths, held = split_paths(paths, options.held_out_fraction)
    pool = ImagePool.load(
        train_paths, config.channels, config.crop_px + 2 * config.margin_px, config.min_tissue
    )
    roots = ", ".join(str(p) for p in options.data)
    description = (
        f"{len(pool.paths)} training images (of {len(train_paths)} in the training split; "
        f"near-empty or small ones skipped) from {roots}; {len(held)} files held out: "
        f"sha256('<folder>/<stem without _N suffix>') < {options.held_out_fraction} of 2**64 "
        "(whole source files, see models.training.data.is_held_out)"
    )
    return pool, description


def _step_loss(
    model: nn.Module, config: TaskConfig, batch: dict[str, torch.Tensor], options: TrainOptions
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
    if config.kind == "classifier":
        logits, extent = model(batch["input"])
        loss, terms = classifier_loss(logits, extent, batch["label"], batch["extent"])
        return loss, terms, None
    output = model(batch["input"])
    loss, terms = restoration_loss(
        output, batch["target"], options.ssim_weight, options.frequency_weight
    )
    if "blur" in batch and hasattr(model, "auxiliary_loss"):
        auxiliary = model.auxiliary_loss(batch["input"], batch["blur"])
        loss, terms = loss + auxiliary, {**terms, "estimator": auxiliary.item()}
    return loss, terms, output


def _deepened(model: nn.Module, payload: dict, extra_blocks: int) -> nn.Module:
    """``model`` with ``extra_blocks`` identity residual blocks; ``payload`` is updated."""
    if extra_blocks < 0:
        raise ValueError("--add-blocks must be positive")
    if not isinstance(model, SRResNet):
        raise ValueError(f"--add-blocks needs an srresnet checkpoint, not {payload['network']}")
    deeper = model.deepened(extra_blocks)
    payload["network_kwargs"] = {**payload["network_kwargs"], "blocks": deeper.blocks}
    return deeper


def train(config: TaskConfig, options: TrainOptions) -> Path:
    """Train (or fine-tune / resume) one model, then export it into ``options.out``.

    Batches are drawn from ``numpy.random.default_rng([seed, step])``, so a run is
    reproducible step for step and a resumed run sees the same batches it would have seen.
    """
    torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    options.work_dir.mkdir(parents=True, exist_ok=True)
    pool, data_description = training_data(config, options)
    batch_size = options.batch or config.batch
    base_lr = options.lr or config.lr
    if options.add_blocks and options.init_from is None:
        raise ValueError("--add-blocks deepens a checkpoint: give it --init-from")
    if options.init_from is not None:
        model, payload = load_checkpoint(options.init_from, config.network_kwargs)
        if options.add_blocks:
            model = _deepened(model, payload, options.add_blocks)
        model.train()
        # the checkpoint's network, not the task's default, is what gets trained and saved
        config = replace(
            config, network=payload["network"], network_kwargs=payload["network_kwargs"]
        )
    else:
        model = build_network(config.network, config.network_kwargs)
    freeze(model, options.freeze)
    device = torch.device(options.device)
    model.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=base_lr)
    average = _moving_average(model, options.ema_decay)
    critic = PatchCritic(config.channels).to(device) if options.adversarial_steps else None
    critic_opt = torch.optim.Adam(critic.parameters(), lr=1e-4) if critic else None
    step, elapsed, steps = 0, 0.0, options.steps
    if steps is None and not (options.minutes and options.adversarial_steps == 0):
        raise ValueError("--steps auto needs --minutes and no --adversarial-steps")
    if options.resume and _state_path(options).exists():
        state = torch.load(_state_path(options), map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if average is not None and state.get("average"):
            average.load_state_dict(state["average"])
        elif average is not None:  # a run that had none: average from the resumed weights
            average = _moving_average(model, options.ema_decay)
        if critic is not None and state.get("critic"):
            critic.load_state_dict(state["critic"])
            critic_opt.load_state_dict(state["critic_optimizer"])  # type: ignore[union-attr]
        step, elapsed = state["step"], state["elapsed_s"]
        steps = steps if steps is not None else state.get("steps")
        options.history = state.get("history", [])
        print(f"resumed at step {step} ({elapsed / 60:.1f} min)")
    fit = StepFit(step) if steps is None else None
    total = (10**9 if steps is None else steps) + options.adversarial_steps  # None: not fitted
    budget_s = options.minutes * 60 if options.minutes else float("inf")
    start, last_save = time.perf_counter() - elapsed, time.perf_counter()
    running: dict[str, float] = {}
    model.train()
    stream = batch_stream(config, pool, options.seed, batch_size, step, options.loader_workers)
    while step < total and time.perf_counter() - start < budget_s:
        arrays = next(stream)
        batch = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
        supervised = total - options.adversarial_steps
        lr = _lr_at(min(step, supervised), supervised, base_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, terms, output = _step_loss(model, config, batch, options)
        if critic is not None and step >= supervised and output is not None:
            critic_opt.zero_grad()  # type: ignore[union-attr]
            d_loss = critic_loss(critic(batch["target"]), critic(output.detach()))
            d_loss.backward()
            critic_opt.step()  # type: ignore[union-attr]
            adv = generator_adversarial(critic(output))
            loss = loss + options.adversarial_weight * adv
            terms = {**terms, "adv": adv.item(), "critic": d_loss.item()}
        optimizer.zero_grad()
        loss.backward()
        if config.clip_grad_norm:
            norm = nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            terms = {**terms, "grad_norm": float(norm)}
        optimizer.step()
        if average is not None:
            average.update_parameters(model)
        step += 1
        if fit is not None and (fitted := fit.after(step, time.perf_counter() - start, budget_s)):
            steps, total, fit = fitted, fitted, None
            print(f"--steps auto: {steps} steps fit in --minutes {options.minutes}", flush=True)
        for k, v in terms.items():
            running[k] = running.get(k, 0.0) + v
        if step % options.log_every == 0 or step == total:
            n = options.log_every if step % options.log_every == 0 else step % options.log_every
            record = {k: round(v / n, 5) for k, v in running.items()}
            record.update(step=step, lr=round(lr, 7), minutes=round(_minutes(start), 2))
            options.history.append(record)
            print(json.dumps(record), flush=True)
            running = {}
        if time.perf_counter() - last_save > options.checkpoint_every_s:
            _save_state(options, model, average, optimizer, critic, critic_opt, step, start, steps)
            last_save = time.perf_counter()
    _save_state(options, model, average, optimizer, critic, critic_opt, step, start, steps)
    stream.close()  # stops the loader processes
    minutes = _minutes(start)
    print(f"stopped at step {step}/{total} after {minutes:.1f} min")
    if options.export:
        record = TrainingRecord(
            data=data_description,
            command=options.command,
            minutes=round(minutes, 1),
            seed=options.seed,
            hardware=_hardware(device, options.threads),
        )
        exported = (model if average is None else average.module).eval().cpu()
        manifest = write_model_folder(exported, config, options.out, record)
        extra = {"steps": step, "batch": batch_size, "lr": base_lr}
        if average is not None:
            extra["ema_decay"] = options.ema_decay
        _add_training_extras(options.out, extra, options.history[-1] if options.history else {})
        print(f"exported {options.out} ({manifest.throughput_mpx_per_s} MP/s)")
    return options.out


def _moving_average(model: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and buffers (``decay`` 0: none).

    Fine-tuning's last iterates scatter around a minimum, and their average can score better
    than the last one; with a decay, the average is what gets saved and exported.
    """
    if decay == 0:
        return None
    if not 0 < decay < 1:
        raise ValueError(f"--ema {decay}: the decay must lie between 0 and 1")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _hardware(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU, torch {torch.__version__}, {threads} thread{'' if threads == 1 else 's'}"


def _minutes(start: float) -> float:
    return (time.perf_counter() - start) / 60


def _save_state(options, model, average, optimizer, critic, critic_opt, step, start, steps) -> None:
    torch.save(
        {
            "model": model.state_dict(),
            "average": average.state_dict() if average else None,
            "optimizer": optimizer.state_dict(),
            "critic": critic.state_dict() if critic else None,
            "critic_optimizer": critic_opt.state_dict() if critic_opt else None,
            "step": step,
            "steps": steps,  # the schedule's length (None: --steps auto, not yet fitted)
            "elapsed_s": time.perf_counter() - start,
            "history": options.history,
        },
        _state_path(options),
    )


def _add_training_extras(out: Path, extra: dict, last_log: dict) -> None:
    """Record steps, batch, learning rate and the final training losses in the manifest."""
    from models.manifest import load_manifest, write_manifest

    manifest = load_manifest(out / "manifest.json")
    data = manifest.model_dump()
    data["training_run"] = {**extra, "final_log": last_log}
    write_manifest(type(manifest).model_validate(data), out)
