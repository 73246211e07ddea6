"""Peak memory per process of whole jobs on a large synthetic slide, through the real server.

Writes a synthetic pyramidal JPEG-tiled TIFF, ``--size`` px square (default 40000: 1.6
gigapixels), tile by tile: an H&E-like texture in square tissue cores on a grid of
``CORE_PITCH_PX``, the cores covering ``--tissue-share`` of the slide (default 0.02, so a
job restores tens of megapixels and takes minutes on a small CPU, not hours), glass
elsewhere. For each model (``--model``, or ``--all-models``: every shipped model in
``models/zoo`` and ``auto``) it starts a fresh ``python -m app`` (embedded worker; the zoo
and the identity test model installed), uploads the slide over HTTP, runs one job with
default settings and samples every process's peak RSS (VmHWM in /proc, every 0.2 s) until
the job ends. Prints one figure per process and model, then a summary.

What must stay bounded is memory against slide size: the tissue map, tile grid, tile
table, blur map and pyramid scale with the slide, while the model work (tiles in flight)
does not; the sparse tissue keeps the time down without shrinking any of those.

The server accepts any output size (only the input is limited, by ``max_slide_pixels``);
a model whose output would be wider than ``--max-output-px`` (default 40000) runs on a
centred region of the slide ``--max-output-px / scale`` px square instead (``sr-x2``:
20000, ``sr-x4``: 10000 px, both 40000 x 40000 px out), because copying 25.6 gigapixels of
upscaled glass through ``sr-x4`` would take hours here.

    .venv/bin/python benchmarks/memory.py --size 40000 --all-models
    .venv/bin/python benchmarks/memory.py [--size 40000] [--model identity] [--tissue-share F]
        [--models-dir D] [--tile-px N] [--max-output-px 40000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.registry import get_model
from tests.app.server import Server, upload, wait_for_job
from tests.fixtures import identity_model
from workers.settings import ZOO_DIR

TILE = 512
CORE_PITCH_PX = 8192  # level-0 distance between tissue cores
GLASS = 242


def in_core(l0: np.ndarray, share: float) -> np.ndarray:
    """Which level-0 coordinates (along one axis) fall in a core; cores start tile-aligned."""
    core_px = round(CORE_PITCH_PX * share**0.5)
    start = (CORE_PITCH_PX - core_px) // 2 // 1024 * 1024
    return (l0 % CORE_PITCH_PX >= start) & (l0 % CORE_PITCH_PX < start + core_px)


def synthetic_tile(y0: int, x0: int, h: int, w: int, step: int, share: float) -> np.ndarray:
    """H&E-like texture in the cores, glass elsewhere (step = level-0 px per pixel)."""
    rows, cols = (
        in_core(np.arange(y0, y0 + h) * step, share),
        in_core(np.arange(x0, x0 + w) * step, share),
    )
    if not rows.any() or not cols.any():
        return np.full((h, w, 3), GLASS, np.uint8)
    yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float32) * step
    grain = (np.sin(xx / 7.0) * np.cos(yy / 5.0) + np.sin((xx - yy) / 11.0)) * 30
    rgb = np.stack([200 + grain, 110 + grain, 170 + grain], axis=-1)
    out = np.where((rows[:, None] & cols[None, :])[..., None], rgb, GLASS)
    return np.clip(out, 0, 255).astype(np.uint8)


def write_slide(path: Path, size: int, share: float) -> None:
    """The synthetic slide as a pyramidal JPEG-tiled BigTIFF, one tile in memory at a time."""
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        level, step = 0, 1
        while True:
            n = -(-size // step)

            def tiles(n=n, step=step):
                for ty in range(0, n, TILE):
                    for tx in range(0, n, TILE):
                        tile = np.full((TILE, TILE, 3), GLASS, np.uint8)
                        h, w = min(TILE, n - ty), min(TILE, n - tx)
                        tile[:h, :w] = synthetic_tile(ty, tx, h, w, step, share)
                        yield tile

            tif.write(
                tiles(),
                shape=(n, n, 3),
                dtype="uint8",
                tile=(TILE, TILE),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": 90},
                resolution=(20000.0, 20000.0),
                resolutionunit="CENTIMETER",
                subfiletype=1 if level else 0,
            )
            if n <= 1024:
                break
            level, step = level + 1, step * 4


def process_tree(root: int) -> list[int]:
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):  # children of every thread
            try:
                frontier.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def command(pid: int) -> str:
    """A process's command line (raises OSError once it has gone)."""
    return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()


def role(pid: int, cmd: str) -> str:
    """What a server process is, from its command line and its parent's."""
    if "celery" in cmd:
        parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        pool = "celery" in command(int(parent))
        return "worker pool process (runs the tasks)" if pool else "worker main process"
    if "multiprocessing.spawn" in cmd:
        return "spawned child (sandboxed inspection)"
    if " -m app" in cmd:
        return "API (python -m app)"
    return cmd[:90]


def peak_rss_mb(pid: int) -> tuple[str, float] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        label = f"{role(pid, command(pid))} [{pid}]"
    except (OSError, ValueError, IndexError):
        return None
    hwm = next((line for line in status.splitlines() if line.startswith("VmHWM")), None)
    if hwm is None:  # a zombie (exited, not yet reaped) has no memory figures
        return None
    return label, int(hwm.split()[1]) / 1024


class PeakSampler:
    """Samples the peak RSS of a server's process tree while in use: ``with PeakSampler(pid)``."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.peaks: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for pid in process_tree(self.root_pid):
                if (found := peak_rss_mb(pid)) is not None:
                    old = self.peaks.get(pid, found)
                    self.peaks[pid] = max(old, found, key=lambda x: x[1])
            time.sleep(0.2)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


SHIPPED = ("deblur-defocus", "deblur-motion", "sr-x2", "sr-x4", "auto")  # + blur-classifier


def model_scale(model: str, args: argparse.Namespace) -> int:
    """How many times larger the model's output is than its input (``auto``: 1)."""
    return 1 if model == "auto" else get_model(args.models_dirs, model).manifest.scale


def job_body(slide_id: str, model: str, args: argparse.Namespace) -> dict:
    """The job request: default settings, on a centred region when the output would be wider."""
    scale = model_scale(model, args)
    body: dict = {"slide_id": slide_id, "model": model}
    side = min(args.size, args.max_output_px // scale)
    if side < args.size:
        offset = (args.size - side) // 2
        body["region"] = [offset, offset, side, side]
    if args.tile_px:
        body["tile_px"] = args.tile_px
    return body


def run_model(slide_path: Path, model: str, args: argparse.Namespace, work: Path) -> dict:
    """One job on a fresh server; its figures and the peak RSS of each of its processes."""
    dirs = ", ".join(f'"{d}"' for d in args.models_dirs)
    env = {"RESTORE_DATA_DIR": str(work / model), "RESTORE_MODELS_DIRS": f"[{dirs}]"}
    server = Server(env, work / f"server-{model}.log").start()
    sampler = PeakSampler(server.process.pid)
    try:
        with sampler, server.client(timeout=600) as client:
            t0 = time.perf_counter()
            slide = upload(client, slide_path).json()
            t_upload = time.perf_counter() - t0
            body = job_body(slide["id"], model, args)
            t0 = time.perf_counter()
            job = wait_for_job(
                client, client.post("/v1/jobs", json=body).json()["id"], timeout_s=4 * 3600
            )
            t_job = time.perf_counter() - t0
    finally:
        server.stop()
        shutil.rmtree(work / model, ignore_errors=True)  # the outputs; the log stays
    side = body["region"][2] if "region" in body else args.size
    return {
        "args": args,
        "side": side,
        "upload_s": t_upload,
        "job_s": t_job,
        "job": job,
        "peaks": sorted(sampler.peaks.values(), key=lambda x: -x[1]),
    }


def report(model: str, run: dict) -> None:
    """Print one model's job figures and its processes' peaks."""
    job, side = run["job"], run["side"]
    scale = model_scale(model, run["args"])
    print(
        f"{model}: {side} x {side} px in (x{scale}), upload + inspection "
        f"{run['upload_s']:.1f} s; job {job['state']} in {run['job_s']:.1f} s "
        f"({side**2 / 1e6 / run['job_s']:.1f} MP/s); tiles {job['progress']['tiles_total']}, "
        f"timings {job['timings']}"
    )
    for cmd, mb in run["peaks"]:
        print(f"  {mb:8.0f} MiB  {cmd}")


def main() -> None:
    """Write the slide, run each model's job on a fresh server, print the peaks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=40000)
    parser.add_argument("--model", default="identity")
    parser.add_argument("--all-models", action="store_true", help=f"run {', '.join(SHIPPED)}")
    parser.add_argument("--tissue-share", type=float, default=0.01)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--tile-px", type=int, default=None)
    parser.add_argument("--max-output-px", type=int, default=40000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    args.models_dirs = [args.models_dir or ZOO_DIR, identity_model(work / "models").parent]
    slide_path = work / "slide.tif"
    started = time.perf_counter()
    write_slide(slide_path, args.size, args.tissue_share)
    print(
        f"slide: {args.size} x {args.size} px, tissue share {args.tissue_share}, "
        f"{slide_path.stat().st_size / 2**20:.0f} MiB (written in "
        f"{time.perf_counter() - started:.0f} s)"
    )
    runs = {}
    for model in SHIPPED if args.all_models else (args.model,):
        runs[model] = run_model(slide_path, model, args, work)
        report(model, runs[model])
    print(f"server logs in {work}")
    print("largest process peak per model (VmHWM; budget 1536 MiB):")
    for model, run in runs.items():
        cmd, mb = run["peaks"][0]
        print(f"  {model:15s} {mb:6.0f} MiB ({mb / 1536:.2f}), job {run['job_s']:.0f} s: {cmd}")


if __name__ == "__main__":
    main()
