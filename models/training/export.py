"""ONNX export, torch/ONNX parity check, CPU throughput and the manifest beside the model."""

from __future__ import annotations

import inspect
import os
import platform
import shlex
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.manifest import (
    BLUR_CLASSES,
    MANIFEST_NAME,
    ModelManifest,
    PsfGraph,
    TrainingRecord,
    file_sha256,
    load_manifest,
    write_manifest,
)
from models.runtime import VERSION as ORT_VERSION
from models.runtime import open_session
from models.training.networks import (
    BlurClassifier,
    DefocusWienerUNet,
    KnownMotionPsf,
    SRResNet,
    UNetDeblur,
    UNetSR,
    WienerUNet,
)
from models.training.tasks import TaskConfig

OPSET = 17
MODEL_FILE = "model.onnx"
PSF_FILE = "model_psf.onnx"
CHECKPOINT_FILE = "checkpoint.pt"
NETWORKS: dict[str, type[nn.Module]] = {
    "unet": UNetDeblur,
    "wiener-unet": WienerUNet,
    "defocus-wiener-unet": DefocusWienerUNet,
    "srresnet": SRResNet,
    "unet-sr": UNetSR,
    "classifier": BlurClassifier,
}


def build_network(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """Instantiate a network by its registry name."""
    return NETWORKS[name](**kwargs)


def save_checkpoint(model: nn.Module, config: TaskConfig, path: Path, **info: Any) -> None:
    """Write the small fine-tuning checkpoint: weights plus how to rebuild the network."""
    torch.save(
        {
            "task": config.name,
            "network": config.network,
            "network_kwargs": config.network_kwargs,
            "state_dict": model.state_dict(),
            **info,
        },
        path,
    )


def load_checkpoint(
    path: Path, defaults: dict[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a network from a checkpoint written by :func:`save_checkpoint`.

    ``defaults`` fills in network options that the checkpoint predates (such as the
    classifier's ``average_rotated``); options its network does not take are ignored, and
    the checkpoint's own options always win. The returned payload's ``network_kwargs`` are
    the options the network was built with.
    """
    payload = torch.load(path, map_location="cpu", weights_only=True)
    accepted = inspect.signature(NETWORKS[payload["network"]]).parameters
    own = payload["network_kwargs"]
    predated = {k: v for k, v in (defaults or {}).items() if k in accepted and k not in own}
    payload["network_kwargs"] = {**predated, **own}
    model = build_network(payload["network"], payload["network_kwargs"])
    load_weights(model, payload["state_dict"], grown=bool(predated))
    return model.eval(), payload


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], grown: bool = False) -> None:
    """Load ``state`` into ``model``, also from before the network gained inputs or a branch.

    A network that has since been given more inputs (a convolution's input channels or a
    linear layer's input features, appended after the old ones) keeps the old weights for
    the old inputs and gets zero weights for the new ones, so it starts out computing
    exactly what the checkpoint did and fine-tuning learns to use the new inputs. With
    ``grown`` (the network was built with options the checkpoint predates), parameters the
    checkpoint lacks, such as a branch feeding those new inputs, keep their fresh
    initialisation. Any other difference (names, output channels, kernel sizes) is an error.
    """
    own = model.state_dict()
    added = own.keys() - state.keys() if grown else set()
    if own.keys() - added != state.keys():
        names = sorted((own.keys() - added) ^ state.keys())
        raise ValueError(f"checkpoint does not fit the network: {names}")
    for name, tensor in state.items():
        target = own[name]
        if tensor.shape == target.shape:
            continue
        grows = tensor.dim() in (2, 4) and tensor.shape[1] < target.shape[1]
        if not grows or tensor.shape[:1] + tensor.shape[2:] != target.shape[:1] + target.shape[2:]:
            raise ValueError(f"{name}: {tuple(tensor.shape)} does not fit {tuple(target.shape)}")
        widened = torch.zeros_like(target)
        widened[:, : tensor.shape[1]] = tensor
        state = {**state, name: widened}
    model.load_state_dict({**{name: own[name] for name in added}, **state})


def output_names(config: TaskConfig) -> list[str]:
    """Names of the ONNX outputs (the server contract).

    ONNX graphs are in SSA form, so a generator's output cannot share the input's name
    ``image``; it is called ``output`` and listed in the manifest's ``output_names``.
    """
    return ["logits", "extent"] if config.kind == "classifier" else ["output"]


def export_onnx(model: nn.Module, config: TaskConfig, path: Path, side: int = 64) -> None:
    """Export with dynamic batch, height and width (opset :data:`OPSET`)."""
    model = model.eval()
    example = torch.rand(1, config.channels, side, side)
    names = output_names(config)
    axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    if config.kind == "classifier":
        axes.update({"logits": {0: "batch"}, "extent": {0: "batch"}})
    else:
        axes["output"] = {0: "batch", 2: "out_height", 3: "out_width"}
    # the TorchScript exporter warns about constant folding of edge padding; the result is
    # checked against torch by :func:`parity` instead
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["image"],
            output_names=names,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def parity(model: nn.Module, path: Path, shapes: list[tuple[int, int, int, int]]) -> float:
    """Largest absolute difference between torch and ONNX Runtime outputs over ``shapes``."""
    sess = open_session(path, threads=2)
    worst = 0.0
    rng = np.random.default_rng(0)
    for shape in shapes:
        x = rng.random(shape, dtype=np.float32)
        with torch.no_grad():
            ref = model.eval()(torch.from_numpy(x))
        refs = ref if isinstance(ref, tuple) else (ref,)
        outs = sess.run(None, {"image": x})
        for r, o in zip(refs, outs, strict=True):
            if r.shape != o.shape:
                raise AssertionError(f"shape mismatch {tuple(r.shape)} vs {o.shape}")
            worst = max(worst, float(np.abs(r.numpy() - o).max()))
    return worst


def export_psf_onnx(model: WienerUNet, path: Path, side: int = 64) -> float:
    """Export ``model`` told its PSF (inputs ``image`` and ``psf`` [N, 2]); return the parity.

    The parity is the largest absolute difference from torch on a few shapes and PSFs.
    """
    known = KnownMotionPsf(model).eval()
    example = (torch.rand(1, 3, side, side), torch.tensor([[9.0, 1.0]]))
    axes = {
        "image": {0: "batch", 2: "height", 3: "width"},
        "psf": {0: "batch"},
        "output": {0: "batch", 2: "out_height", 3: "out_width"},
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            known,
            example,
            str(path),
            input_names=["image", "psf"],
            output_names=["output"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    session, worst = open_session(path, threads=2), 0.0
    rng = np.random.default_rng(0)
    for shape, psf in (((1, 3, 64, 64), [[5.0, 1.0]]), ((2, 3, 72, 96), [[12.5, 0.0], [30, 1]])):
        image = rng.random(shape, dtype=np.float32)
        psf_array = np.asarray(psf, dtype=np.float32)
        with torch.no_grad():
            ref = known(torch.from_numpy(image), torch.from_numpy(psf_array)).numpy()
        out = session.run(None, {"image": image, "psf": psf_array})[0]
        worst = max(worst, float(np.abs(ref - out).max()))
    return worst


def add_psf_graph(out_dir: Path) -> ModelManifest:
    """Give a motion model folder its known-PSF graph (same checkpoint, same weights)."""
    manifest = load_manifest(out_dir / MANIFEST_NAME)
    model, _ = load_checkpoint(out_dir / CHECKPOINT_FILE)
    if not isinstance(model, WienerUNet):
        raise ValueError(f"{manifest.name} does not take a PSF ({type(model).__name__})")
    worst = export_psf_onnx(model.eval(), out_dir / PSF_FILE)
    if worst > 1e-3:
        raise AssertionError(f"the PSF graph differs from torch by {worst}")
    graph = PsfGraph(
        file=PSF_FILE,
        sha256=file_sha256(out_dir / PSF_FILE),
        description="psf [N, 2]: box length in px and 1.0 for motion along x (0.0 along y); "
        f"the same weights as {manifest.file}, the estimator skipped; parity {worst:.2e}",
    )
    manifest = manifest.model_copy(update={"psf_graph": graph})
    write_manifest(manifest, out_dir)
    return manifest


def throughput(path: Path, config: TaskConfig, repeats: int = 9) -> dict[str, float]:
    """CPU throughput through ONNX Runtime (2 threads) in megapixels per second.

    Generators: output megapixels per second on one tile of ``tile_px + 2 * halo_px`` input
    pixels per side (``core_mpx_per_s`` counts only the ``tile_px`` core kept after the halo
    is cropped). Classifier: input megapixels per second on a batch of 16 tiles. The figure
    is the fastest of ``repeats`` runs: this CPU is shared, and the minimum is the time least
    disturbed by other load (as ``timeit`` advises); the median is kept beside it.
    """
    sess = open_session(path, threads=2)
    if config.kind == "classifier":
        shape = (16, config.channels, config.tile_px, config.tile_px)
    else:
        side = config.tile_px + 2 * config.halo_px
        shape = (1, config.channels, side, side)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    sess.run(None, {"image": x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(None, {"image": x})
        times.append(time.perf_counter() - start)
    seconds, median = float(np.min(times)), float(np.median(times))
    scale = 1 if config.kind == "classifier" else config.scale
    pixels = shape[0] * shape[2] * shape[3] * scale**2
    core = shape[0] * (config.tile_px * scale) ** 2
    return {
        "mpx_per_s": pixels / seconds / 1e6,
        "core_mpx_per_s": core / seconds / 1e6,
        "median_mpx_per_s": pixels / median / 1e6,
        "seconds_per_call": seconds,
        "repeats": repeats,
        "input_shape": list(shape),
    }


_VECTOR_UNITS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("asimd", "NEON"))


def cpu_description() -> str:
    """The CPU a throughput was measured on: model name, cores, widest vector unit.

    Figures differ about twofold between the VMs this project has run on, so a figure is
    recorded with its machine.
    """
    info = Path("/proc/cpuinfo")
    text = info.read_text() if info.exists() else ""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in pairs}
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    isa = next((label for flag, label in _VECTOR_UNITS if flag in flags), "")
    return ", ".join(part for part in (name, f"{os.cpu_count()} cores", isa) if part)


def write_model_folder(
    model: nn.Module,
    config: TaskConfig,
    out_dir: Path,
    training: TrainingRecord,
    version: str = "1.0.0",
) -> ModelManifest:
    """Export ONNX, verify it, measure it, and write checkpoint + manifest into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / MODEL_FILE
    export_onnx(model, config, onnx_path)
    s = config.scale
    shapes = [(1, config.channels, 64, 64), (2, config.channels, 72, 96)]
    worst = parity(model, onnx_path, shapes)
    if worst > 1e-3:
        raise AssertionError(f"ONNX output differs from torch by {worst}")
    speed = throughput(onnx_path, config)
    save_checkpoint(model, config, out_dir / CHECKPOINT_FILE, step=None)
    extras: dict[str, Any] = {
        "network": {"name": config.network, **config.network_kwargs},
        "checkpoint": CHECKPOINT_FILE,
        "size_multiple": 8,
        "min_size_px": getattr(model, "min_size_px", 1),
        "onnx_parity_max_abs_diff": worst,
        "throughput": {
            **speed,
            "threads": 2,
            "runtime": f"onnxruntime {ORT_VERSION}",
            "cpu": cpu_description(),
        },
    }
    if config.kind == "classifier":
        extras["classes"] = list(BLUR_CLASSES)
        extras["extent_unit"] = "px, sqrt(12 * PSF variance)"
    manifest = ModelManifest(
        name=config.name,
        version=version,
        task=config.task,  # type: ignore[arg-type]
        kind=config.kind,  # type: ignore[arg-type]
        file=MODEL_FILE,
        sha256=file_sha256(onnx_path),
        opset=OPSET,
        output_names=output_names(config),
        in_channels=config.channels,
        out_channels=config.channels if config.kind == "generator" else len(BLUR_CLASSES),
        scale=s,
        tile_px=config.tile_px,
        halo_px=config.halo_px,
        description=config.description,
        training=training,
        metrics={},  # new weights: python -m models.evaluate measures them
        throughput_mpx_per_s=round(speed["mpx_per_s"], 3),
        **extras,
    )
    write_manifest(manifest, out_dir)
    if isinstance(model, WienerUNet):
        manifest = add_psf_graph(out_dir)
    return manifest


def _bumped(version: str, part: int) -> str:
    """``1.2.3`` with its minor (``part`` 1) or patch (``part`` 2) number raised."""
    numbers = [int(n) for n in version.split(".")[:3]]
    numbers[part] += 1
    return ".".join(str(n) for n in numbers[: part + 1] + [0] * (2 - part))


def _reproducible(command: str) -> str:
    """A training command without its local ``--out`` and ``--work-dir`` (the zoo's defaults)."""
    words = shlex.split(command)
    kept = [
        w
        for i, w in enumerate(words)
        if w not in ("--out", "--work-dir")
        and (i == 0 or words[i - 1] not in ("--out", "--work-dir"))
    ]
    return shlex.join(kept)


def export_checkpoint(
    config: TaskConfig,
    checkpoint: Path,
    out_dir: Path,
    version: str | None = None,
    note: str = "",
) -> ModelManifest:
    """Export a checkpoint into a model folder, carrying its training record along.

    * The folder's own checkpoint (an exporter change, same weights): the record, held-out
      metrics and training log stay; the version's patch number goes up if the file changed.
    * A checkpoint from a fine-tuning run's ``--out`` folder into the folder of its parent:
      the records are chained (commands joined by ``&&``, minutes added), the run's training
      log is kept and the parent's metrics are dropped (they describe other weights; run
      ``python -m models.evaluate``); the minor number goes up.
    * A checkpoint with no manifest beside it into a model folder: new weights of unknown
      training, so the record says where they came from, the metrics are dropped and the
      minor number goes up.
    * Otherwise the run's record (or "not recorded") and version 1.0.0.

    ``note`` (why it ships, say) follows the run's command in the record.
    """
    model, payload = load_checkpoint(checkpoint, config.network_kwargs)
    config = replace(config, network=payload["network"], network_kwargs=payload["network_kwargs"])
    parent = _manifest_in(out_dir)
    own = checkpoint.resolve().parent == out_dir.resolve()
    run = None if own else _manifest_in(checkpoint.resolve().parent)
    source, record, default_version = _lineage(parent, None if own else (run, checkpoint), note)
    manifest = write_model_folder(model.eval(), config, out_dir, record, version or default_version)
    data = manifest.model_dump()
    if parent is not None and own:  # the same weights
        data["metrics"] = parent.metrics
        if not version and manifest.sha256 == parent.sha256:
            data["version"] = parent.version  # the very same file
    extra = (source.model_extra if source else None) or {}
    if "training_run" in extra:
        data["training_run"] = extra["training_run"]
    manifest = type(manifest).model_validate(data)
    write_manifest(manifest, out_dir)
    return manifest


def _lineage(
    parent: ModelManifest | None,
    other: tuple[ModelManifest | None, Path] | None,
    note: str,
) -> tuple[ModelManifest | None, TrainingRecord, str]:
    """The manifest the record comes from, the record and the default version.

    ``other`` is None for the folder's own checkpoint, else the manifest beside the
    checkpoint (None if it has none) and the checkpoint's path.
    """
    unknown = TrainingRecord(data="not recorded", command="not recorded")
    if other is None:
        if parent is None:
            return None, unknown, "1.0.0"
        return parent, parent.training, _bumped(parent.version, 2)
    run, checkpoint = other
    if parent is None:
        return run, run.training if run else unknown, "1.0.0"
    if run is None:
        step = f"weights from {checkpoint} (no training record beside it"
        step += f"; {note})" if note else ")"
        record = parent.training.model_copy(
            update={"command": f"{parent.training.command} && {step}"}
        )
        return None, record, _bumped(parent.version, 1)
    step = f"{_reproducible(run.training.command)} ({run.training.minutes} min"
    step += f"; {note})" if note else ")"
    minutes = (parent.training.minutes or 0) + (run.training.minutes or 0)
    record = run.training.model_copy(
        update={
            "command": f"{parent.training.command} && {step}",
            "minutes": round(minutes, 1),
            "data": _joined(parent.training.data, run.training.data),
            "hardware": _joined(parent.training.hardware, run.training.hardware),
        }
    )
    return run, record, _bumped(parent.version, 1)


def _joined(earlier: str | None, later: str | None) -> str | None:
    """A chained record's data or hardware: both, unless the earlier already says the later."""
    if not earlier or not later or later in earlier:
        return earlier or later
    return f"{earlier}; then {later}"


def _manifest_in(folder: Path) -> ModelManifest | None:
    path = folder / "manifest.json"
    return load_manifest(path) if path.exists() else None
