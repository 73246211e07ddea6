"""CPU throughput of every shipped ONNX model, measured interleaved in one run.

Each round runs every model once (``--block N``: N times) on its manifest tile
(``tile_px + 2 * halo_px`` per side; 16 tiles of 128 px for the classifier) with 2 ONNX
Runtime threads; the figures are the median over rounds, in megapixels per second (output
pixels, halo included), with the ratio to ``deblur-defocus`` measured in the same rounds.
This machine's CPU is shared and noisy, so compare the ratios rather than absolute figures
across runs.

    .venv/bin/python benchmarks/model_throughput.py [--rounds 15] [--block 1] [--compare MODEL FILE]

``--compare deblur-defocus /tmp/old/model.onnx`` also runs that file on the model's tile in
the same rounds: the way to tell whether a new export of one model is faster, since even
the ratios move by 10-20 % between runs on a shared CPU.

``--block N`` runs each model N times back to back in every round and keeps the fastest of
those calls: the steady state of a job, which runs one model on tile after tile. A model
run once after the others (the default, ``--block 1``) is slower, and differences between
two files of one model can shrink there (``deblur-defocus`` 1.3.1 against 1.3.0: 1.02x
interleaved, 1.08-1.17x in blocks of 9).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from models.registry import discover
from models.runtime import open_session
from workers.settings import ZOO_DIR


def main() -> None:
    """Print the median throughput of each shipped model and its ratio to deblur-defocus."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--block", type=int, default=1, help="calls of one model back to back per round"
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        action="append",
        default=[],
        metavar=("MODEL", "FILE"),
        help="also run this ONNX file on MODEL's tile",
    )
    args = parser.parse_args()
    models = discover([ZOO_DIR])
    unknown = {model for model, _ in args.compare} - set(models)
    if unknown:
        parser.error(f"not a shipped model: {', '.join(sorted(unknown))}")
    runs = {}
    for name, installed in sorted(models.items()):
        m = installed.manifest
        if m.kind == "classifier":
            shape, out_px = (16, m.in_channels, m.tile_px, m.tile_px), 16 * m.tile_px**2
        else:
            side = m.tile_px + 2 * m.halo_px
            shape, out_px = (1, m.in_channels, side, side), (side * m.scale) ** 2
        session = open_session(installed.onnx_path, threads=2)
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        session.run(None, {m.input_name: x})
        runs[name] = (session, x, out_px, m.input_name, [])
        for other in (path for model, path in args.compare if model == name):
            session = open_session(other, threads=2)
            session.run(None, {m.input_name: x})
            runs[f"{name} ({other})"] = (session, x, out_px, m.input_name, [])
    for _ in range(args.rounds):
        for session, x, out_px, input_name, rates in runs.values():
            seconds = []
            for _ in range(args.block):
                start = time.perf_counter()
                session.run(None, {input_name: x})
                seconds.append(time.perf_counter() - start)
            rates.append(out_px / min(seconds) / 1e6)
    reference = statistics.median(runs["deblur-defocus"][4]) if "deblur-defocus" in runs else 1
    width = max(18, *(len(name) for name in runs))
    print(f"{'model':{width}s} {'median MP/s':>12s} {'min':>7s} {'max':>7s} {'/ defocus':>10s}")
    for name, (*_, rates) in runs.items():
        med = statistics.median(rates)
        low, high = min(rates), max(rates)
        print(f"{name:{width}s} {med:12.2f} {low:7.2f} {high:7.2f} {med / reference:10.2f}")


if __name__ == "__main__":
    main()
