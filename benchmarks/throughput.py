"""End-to-end throughput of a job against the bare model, on an all-tissue slide of real tissue.

Builds a slide of scikit-image's IHC image mirrored to ``--side`` px square (default 4096:
16.8 Mpx, all tissue), stored as a JPEG-tiled pyramidal TIFF like a scanner's, then
alternates for ``--rounds`` rounds:

- the bare model: ONNX Runtime alone in one process with every core (its limit on this
  host) on the server's default tile (the manifest's ``tile_px`` plus twice its
  ``halo_px``), in the server's batches (``tile_batch`` tiles, fewer past
  ``tile_batch_px`` output pixels), counted in core pixels (``tile_px``^2 per tile) per
  second;
- a whole job with that model (default settings: tile, halo, region, classification),
  run in a child process through the functions the Celery tasks call, phase by phase on
  a pool of worker processes as Celery's prefork pool runs them (``--processes``; by
  default the server's own pool on this host, ``RESTORE_WORKER_CONCURRENCY`` 0: one per
  core, each with its share of the cores as ONNX Runtime threads), without queueing; it
  reports its wall time, per-stage seconds, the pixels it fed the model and the peak RSS
  of its processes.

Prints per round and the medians: bare Mpx/s, end-to-end Mpx/s (slide pixels over the job's
wall time), their ratio, model-input pixels over slide pixels, and peak RSS.

    .venv/bin/python benchmarks/throughput.py [--model deblur-defocus] [--side 4096] [--rounds 3]
        [--processes N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.stages import stage_line
from models.registry import discover
from models.runtime import OnnxModel
from workers.settings import ZOO_DIR, Settings


def all_tissue_slide(folder: Path, side: int) -> Path:
    """Real tissue, mirrored to ``side`` x ``side``, as a pyramidal JPEG-tiled TIFF."""
    from skimage import data

    from tests.fixtures import write_pyramid_tiff

    ihc = data.immunohistochemistry()
    reps = -(-side // ihc.shape[0]) + 1
    pixels = np.pad(ihc, ((0, reps * ihc.shape[0]), (0, reps * ihc.shape[1]), (0, 0)), "symmetric")
    return write_pyramid_tiff(folder / "tissue.tif", pixels[:side, :side], levels=4)


def bare_mpx_per_s(model: OnnxModel, batch: int, calls: int = 4) -> float:
    """Core megapixels per second of the model alone on its default tile (median call)."""
    side = model.tile_px + 2 * model.halo_px
    tiles = np.random.default_rng(0).random((batch, 3, side, side), dtype=np.float32)
    model(tiles)  # warm-up
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        model(tiles)
        seconds.append(time.perf_counter() - started)
    return batch * model.tile_px**2 / statistics.median(seconds) / 1e6


def _counting_model_calls() -> dict[str, int]:
    """Count the pixels fed to generator models in this process (returns the live counter)."""
    fed = {"pixels": 0}
    call = OnnxModel.__call__

    def counting(self: OnnxModel, batch: np.ndarray) -> np.ndarray:
        if self.manifest.kind == "generator":
            fed["pixels"] += batch.shape[0] * batch.shape[2] * batch.shape[3]
        return call(self, batch)

    OnnxModel.__call__ = counting  # type: ignore[method-assign]
    return fed


_worker: dict = {}


def _start_worker(root: str, model: str) -> None:
    """A pool process, like a Celery child that has run a job before.

    It has its own settings and store, the job's model sessions already loaded (the bare
    figure, too, is taken after a warm-up call), and a model-call counter.
    """
    from workers import jobs
    from workers.planning import CLASSIFIER, requested_models
    from workers.store import Store

    settings = Settings(data_dir=Path(root), models_dirs=[ZOO_DIR])
    _worker.update(settings=settings, store=Store(settings.resolved_database_url))
    for name in [CLASSIFIER, *requested_models(model)]:
        jobs.onnx_model(settings, name)
    _worker["fed"] = _counting_model_calls()


def _task(kind: str, index: int) -> tuple[int, int, float]:
    """Run one block, region or hook task: (process id, pixels it fed so far, peak RSS MB)."""
    from workers import job_hooks, jobs

    run = {"block": jobs.run_block, "region": jobs.run_region, "hooks": job_hooks.run_region}
    run[kind](_worker["store"], _worker["settings"], "bench", index)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return os.getpid(), _worker["fed"]["pixels"], peak_mb


def run_job(slide: Path | str, model: str, root: Path | str, processes: int | str) -> dict:
    """One job through a pool of ``processes`` workers, as Celery's prefork pool runs it.

    The child side of ``job_in_child``: the job's tasks go to the pool phase by phase
    (blocks, regions, hooks), each process keeping its model sessions between tasks.
    """
    import multiprocessing

    from tests import fixtures
    from workers import job_hooks, jobs
    from workers.store import Store

    slide, root, processes = Path(slide), Path(root), int(processes)
    settings = Settings(data_dir=root, models_dirs=[ZOO_DIR])
    root.mkdir(parents=True, exist_ok=True)
    store = Store(settings.resolved_database_url)
    fixtures.add_job(store, settings, slide, "bench", model)
    results: list[tuple[int, int, float]] = []
    context = multiprocessing.get_context("forkserver")
    with context.Pool(processes, _start_worker, (str(root), model)) as pool:
        pool.starmap(time.sleep, [(2.0,)] * processes, chunksize=1)  # every process ready
        started = time.perf_counter()
        step = jobs.start(store, settings, "bench")
        if step.phase == "classify":
            results += pool.starmap(_task, [("block", i) for i in step.todo], chunksize=1)
            step = jobs.NextStep("restore", jobs.route(store, settings, "bench"))
        results += pool.starmap(_task, [("region", i) for i in step.todo], chunksize=1)
        hooks = job_hooks.todo(store, "bench")
        results += pool.starmap(_task, [("hooks", i) for i in hooks], chunksize=1)
        assert jobs.finish(store, settings, "bench", "task")
        wall = time.perf_counter() - started
    job = store.get_job("bench")
    store.dispose()
    fed: dict[int, int] = {}
    for pid, pixels, _ in results:
        fed[pid] = max(fed.get(pid, 0), pixels)
    width, height = job["params"]["area"][2:]
    return {
        "wall_s": wall,
        "slide_px": width * height,
        "model_input_px": sum(fed.values()),
        "stages": job["metrics"]["timings"],
        "peak_rss_mb": max(rss for _, _, rss in results),
        "processes": processes,
    }


def in_child(module: str, function: str, *args: str) -> dict:
    """Call ``module.function(*args)`` in a fresh process (its peak RSS is the call's own).

    The function returns a JSON-able dict, printed by the child as its last line.
    """
    code = (
        "import importlib, json, sys; sys.path.insert(0, sys.argv[1]); "
        "call = getattr(importlib.import_module(sys.argv[2]), sys.argv[3]); "
        "print(json.dumps(call(*sys.argv[4:])))"
    )
    repo = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code, repo, module, function, *args],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def job_in_child(slide: Path, model: str, root: Path, processes: int = 0) -> dict:
    """Run :func:`run_job` in a fresh process, so peak RSS figures are the job's own.

    ``processes`` 0: the server's default worker pool on this host.
    """
    processes = processes or Settings().resolved_worker_concurrency
    args = (str(slide), model, str(root), str(processes))
    return in_child("benchmarks.throughput", "run_job", *args)


def server_batch(model: OnnxModel, settings: Settings) -> int:
    """Tiles per ONNX Runtime call as the server batches them for this model."""
    side_out = (model.tile_px + 2 * model.halo_px) * model.scale
    return max(1, min(settings.tile_batch, settings.tile_batch_px // side_out**2))


def main() -> None:
    """Alternate bare model and whole job; print the figures and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="deblur-defocus")
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=0, help="0: the server's default")
    args = parser.parse_args()
    settings = Settings()
    installed = discover([ZOO_DIR])[args.model]
    model = OnnxModel(installed, settings.ort_providers, threads=0)  # every core: its limit here
    batch = server_batch(model, settings)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        slide = all_tissue_slide(root, args.side)
        print(
            f"{args.model}: tile {model.tile_px} + 2 x {model.halo_px} halo, batch "
            f"{batch}; slide {args.side} x {args.side} px of tissue"
        )
        bare, e2e, fed = [], [], []
        for k in range(args.rounds):
            bare.append(bare_mpx_per_s(model, batch))
            job = job_in_child(slide, args.model, root / f"job{k}", args.processes)
            e2e.append(job["slide_px"] / job["wall_s"] / 1e6)
            fed.append(job["model_input_px"] / job["slide_px"])
            stages = stage_line(job["stages"])
            print(
                f"round {k}: bare {bare[-1]:.3f} Mpx/s, end to end {e2e[-1]:.3f} Mpx/s "
                f"({job['wall_s']:.1f} s; ratio {e2e[-1] / bare[-1]:.3f}), model input / slide "
                f"{fed[-1]:.3f}, {job['processes']} processes, peak RSS "
                f"{job['peak_rss_mb']:.0f} MB per process; stages (s, summed): {stages}"
            )
        ratio = statistics.median(e2e) / statistics.median(bare)
        print(
            f"median: bare {statistics.median(bare):.3f} Mpx/s, end to end "
            f"{statistics.median(e2e):.3f} Mpx/s, ratio {ratio:.3f}; model input / slide "
            f"{statistics.median(fed):.3f}"
        )


if __name__ == "__main__":
    main()
