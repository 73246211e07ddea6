"""Peak memory and throughput of a whole job on a 20000 x 20000 slide, through the real server.

Writes a synthetic pyramidal tiled TIFF tile by tile, starts ``python -m app`` (embedded
worker), uploads the slide over HTTP, runs a job, and samples every process's peak RSS
(VmHWM in /proc) until the job ends. Prints one figure per process.

    .venv/bin/python benchmarks/memory_20k.py [--size 20000] [--model identity] [--models-dir D]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.app.server import Server, upload, wait_for_job
from tests.fixtures import identity_model

TILE = 512


def synthetic_tile(y0: int, x0: int, h: int, w: int, step: int) -> np.ndarray:
    """Deterministic H&E-like texture at any pyramid level (step = level-0 px per pixel)."""
    yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float32) * step
    tissue = (np.sin(yy / 2100) + np.cos(xx / 1700) + 0.5 * np.sin((xx + yy) / 900)) > 0.2
    grain = (np.sin(xx / 7.0) * np.cos(yy / 5.0) + np.sin((xx - yy) / 11.0)) * 30
    rgb = np.stack([200 + grain, 110 + grain, 170 + grain], axis=-1)
    out = np.where(tissue[..., None], rgb, 242)
    return np.clip(out, 0, 255).astype(np.uint8)


def write_slide(path: Path, size: int) -> None:
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        level, step = 0, 1
        while True:
            n = -(-size // step)

            def tiles(n=n, step=step):
                for ty in range(0, n, TILE):
                    for tx in range(0, n, TILE):
                        tile = np.full((TILE, TILE, 3), 242, np.uint8)
                        h, w = min(TILE, n - ty), min(TILE, n - tx)
                        tile[:h, :w] = synthetic_tile(ty, tx, h, w, step)
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


def peak_rss_mb(pid: int) -> tuple[str, float] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return None
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return cmd[:90], int(hwm.split()[1]) / 1024


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--model", default="identity")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--tile-px", type=int, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench20k-"))
    models = args.models_dir or identity_model(work / "models").parent
    slide_path = work / "slide.tif"
    started = time.perf_counter()
    write_slide(slide_path, args.size)
    print(
        f"slide: {args.size} x {args.size} px, {slide_path.stat().st_size / 2**20:.0f} MiB "
        f"(written in {time.perf_counter() - started:.0f} s)"
    )
    env = {"RESTORE_DATA_DIR": str(work / "var"), "RESTORE_MODELS_DIRS": f'["{models}"]'}
    server = Server(env, work / "server.log").start()
    sampler = PeakSampler(server.process.pid)
    try:
        with sampler, httpx.Client(base_url=server.url, timeout=600) as client:
            t0 = time.perf_counter()
            slide = upload(client, slide_path).json()
            t_upload = time.perf_counter() - t0
            body = {"slide_id": slide["id"], "model": args.model}
            if args.tile_px:
                body["tile_px"] = args.tile_px
            t0 = time.perf_counter()
            job = wait_for_job(
                client, client.post("/v1/jobs", json=body).json()["id"], timeout_s=3600
            )
            t_job = time.perf_counter() - t0
    finally:
        server.stop()
    peaks = sampler.peaks
    mpx = args.size**2 / 1e6
    print(
        f"upload + inspection: {t_upload:.1f} s; job {job['state']} in {t_job:.1f} s "
        f"({mpx / t_job:.1f} MP/s); tiles {job['progress']['tiles_total']}, "
        f"timings {job['timings']}"
    )
    print("peak resident memory per process (VmHWM):")
    for cmd, mb in sorted(peaks.values(), key=lambda x: -x[1]):
        print(f"  {mb:8.0f} MiB  {cmd}")
    worst = max(mb for _, mb in peaks.values())
    print(f"largest process peak: {worst:.0f} MiB ({worst / 1536:.2f} of the 1.5 GiB budget)")


if __name__ == "__main__":
    main()
