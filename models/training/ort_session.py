"""A CPU ONNX Runtime session as the evaluation and the throughput measurement use it."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def session(path: Path, threads: int = 2) -> ort.InferenceSession:
    """A CPU ONNX Runtime session limited to ``threads`` threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
