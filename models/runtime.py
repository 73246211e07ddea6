"""The one module that imports ONNX Runtime: sessions per model, CUDA when present."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from models.registry import InstalledModel

CPU = "CPUExecutionProvider"
VERSION = ort.__version__


def available_providers(wanted: list[str] | None = None) -> list[str]:
    """The wanted execution providers this installation has, in order (CPU at least)."""
    available = set(ort.get_available_providers())
    return [p for p in wanted or [CPU] if p in available] or [CPU]


def open_session(
    path: Path, providers: list[str] | None = None, threads: int = 0
) -> ort.InferenceSession:
    """A session on the first available of ``providers`` (CPU when none is available)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=available_providers(providers))


class OnnxModel:
    """An ONNX model that takes float32 NCHW tiles; reports the provider that runs it."""

    def __init__(
        self,
        model: InstalledModel,
        providers: list[str],
        threads: int = 0,
        psf: tuple[float, float] | None = None,
    ) -> None:
        """``psf`` (length px, 1.0 along x): run the model's known-PSF graph with it."""
        model.verify()
        self.manifest = model.manifest
        self.scale = model.manifest.scale
        self.halo_px = model.manifest.halo_px
        self.tile_px = model.manifest.tile_px
        self.psf: dict[str, np.ndarray] = {}
        path = model.onnx_path
        if psf is not None and model.psf_path is not None and model.manifest.psf_graph:
            path = model.psf_path
            self.psf = {model.manifest.psf_graph.input_name: np.asarray([psf], np.float32)}
        self.session = open_session(path, providers, threads)
        self.run_options = _shrinking_arena() if self.scale > 1 else None
        self.provider = self.session.get_providers()[0]
        self.sha256 = model.manifest.sha256

    def with_psf(self, psf: tuple[float, float]) -> OnnxModel:
        """The same known-PSF session told another PSF (one session serves every PSF)."""
        if not self.psf:
            raise ValueError(f"{self.manifest.name} was not opened on its known-PSF graph")
        twin = copy.copy(self)
        twin.psf = {name: np.asarray([psf], np.float32) for name in self.psf}
        return twin

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Run the model's first output on an RGB batch of any height and width.

        Inputs are mirror-padded up to the model's ``min_size_px`` and ``size_multiple`` and
        outputs cropped back; a 1-channel model restores each channel independently.
        """
        count, channels, height, width = batch.shape
        if self.manifest.in_channels == 1 and channels != 1:
            folded = self(batch.reshape(count * channels, 1, height, width))
            return folded.reshape(count, channels, *folded.shape[2:])
        multiple, least = self.manifest.size_multiple, self.manifest.min_size_px
        pad_h, pad_w = (_padded_side(side, least, multiple) - side for side in (height, width))
        if pad_h or pad_w:
            batch = np.pad(batch, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="symmetric")
        feeds = {self.manifest.input_name: batch.astype(np.float32)}
        feeds.update({name: np.repeat(value, count, axis=0) for name, value in self.psf.items()})
        outputs = self.session.run([self.manifest.output_names[0]], feeds, self.run_options)
        result = np.asarray(outputs[0], dtype=np.float32)
        return result[:, :, : height * self.scale, : width * self.scale]

    def run_all(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every named output for a batch (the classifier has ``logits`` and ``extent``)."""
        outputs = self.session.run(None, {self.manifest.input_name: batch.astype(np.float32)})
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, (np.asarray(o) for o in outputs), strict=True))


class OnnxClassifier:
    """The blur classifier as class probabilities and extent per tile."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.tile_px = model.manifest.tile_px
        self.provider = model.provider

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Softmax of ``logits`` [N, 4] and ``extent`` [N] (px) of a batch of tiles."""
        outputs = self.model.run_all(batch)
        logits = outputs["logits"].astype(np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True), outputs["extent"].reshape(-1)


def _shrinking_arena() -> ort.RunOptions:
    """Run options that give the CPU arena's unused memory back after each call.

    For super-resolution models, whose activations at the output's size grow ONNX
    Runtime's arena the most: ``sr-x2`` on a 20000 px slide took a worker to 1604 MiB,
    over the 1.5 GiB budget; four of its tiles peak at 765 MiB instead of 1033 MiB with
    this, for 8 % more time per call (measured on this 2-core VM).
    """
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


def _padded_side(side: int, least: int, multiple: int) -> int:
    """The smallest length >= ``side`` and >= ``least`` that is a multiple of ``multiple``."""
    target = max(side, least)
    return target + (-target % multiple)


@lru_cache(maxsize=8)
def _load_cached(
    directory: str,
    sha256: str,
    providers: tuple[str, ...],
    threads: int,
    psf_graph: bool = False,
) -> OnnxModel:
    from models.registry import discover_one

    psf = (1.0, 1.0) if psf_graph else None  # opens the graph; each caller sets its PSF (with_psf)
    return OnnxModel(discover_one(directory, sha256), list(providers), threads, psf)


def load_model(
    model: InstalledModel,
    providers: list[str],
    threads: int = 0,
    psf: tuple[float, float] | None = None,
) -> OnnxModel:
    """One session per model version, provider list, thread count (and PSF) per process.

    ``psf`` selects the model's known-PSF graph where it has one (else it is ignored).
    """
    if psf is None or model.manifest.psf_graph is None:
        return _load_cached(str(model.directory), model.manifest.sha256, tuple(providers), threads)
    opened = _load_cached(
        str(model.directory), model.manifest.sha256, tuple(providers), threads, psf_graph=True
    )
    return opened.with_psf(psf)
