"""Peak memory of a continuous-stage sequence job, short and long, through the real server.

Simulates a serpentine scan of real tissue (scikit-image's IHC sample mirrored) as an MP4 of
256 px frames, starts ``python -m app`` (embedded worker) once per length, uploads the video,
runs the ``auto`` job (register, stitch, deblur-motion told the PSF) and samples the peak RSS
of every process. Memory should not grow with the number of frames.

    .venv/bin/python benchmarks/sequence_memory.py [--rows 4] [--frames-per-row 25 250]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.memory import PeakSampler
from tests.app.server import Server, wait_for_job
from tests.scan_simulation import motion_blur, tissue_canvas
from workers.engine.scan_layout import ScanLayout
from workers.settings import ZOO_DIR

FRAME, STEP, ROW_STEP, BLUR, PIXEL_UM, EXPOSURE_S = 256, 176, 192, 9, 0.5, 0.01


def write_scan(path: Path, rows: int, per_row: int, seed: int = 0) -> dict:
    """An MP4 of the scan (frames cut one at a time) and its metadata."""
    layout = ScanLayout(rows, per_row, True, STEP, ROW_STEP, "x", (FRAME, FRAME))
    nominal = layout.nominal_positions()
    jitter = np.random.default_rng(seed).uniform(-3, 3, nominal.shape)
    true = np.rint(nominal + 8 + jitter).astype(int)
    width, height = (nominal.max(axis=0) + FRAME + 16).astype(int)
    blurred = motion_blur(tissue_canvas(height, width), BLUR, "x")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = FRAME, FRAME, "yuv444p"
        stream.options = {"crf": "12"}
        for x, y in true.tolist():
            frame = av.VideoFrame.from_ndarray(blurred[y : y + FRAME, x : x + FRAME], "rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    speed = BLUR * PIXEL_UM / EXPOSURE_S
    return {
        "mode": "continuous-stage",
        "pixel_size_um": PIXEL_UM,
        "stage_speed_um_s": speed,
        "exposure_s": EXPOSURE_S,
        "frame_rate_hz": speed / (STEP * PIXEL_UM),
        "scan_axis": "x",
        "layout": {
            "rows": rows,
            "frames_per_row": per_row,
            "serpentine": True,
            "row_step_um": ROW_STEP * PIXEL_UM,
        },
    }


def run(work: Path, rows: int, per_row: int) -> dict[str, float]:
    """Upload and restore one scan; peak RSS (MB) of the API, its readers and the worker."""
    video = work / f"scan-{rows}x{per_row}.mp4"
    metadata = write_scan(video, rows, per_row)
    env = {
        "RESTORE_DATA_DIR": str(work / f"var-{per_row}"),
        "RESTORE_MODELS_DIRS": f'["{ZOO_DIR}"]',
    }
    server = Server(env, work / f"server-{per_row}.log").start()
    sampler = PeakSampler(server.process.pid)
    try:
        with (
            sampler,
            server.client(timeout=900) as client,
            video.open("rb") as f,
        ):
            started = time.perf_counter()
            data = {"metadata": json.dumps(metadata)}
            sequence = client.post("/v1/sequences", files={"file": f}, data=data).json()
            upload_s = time.perf_counter() - started
            job = client.post("/v1/jobs", json={"sequence_id": sequence["id"]}).json()
            job = wait_for_job(client, job["id"], timeout_s=3600)
            job_s = time.perf_counter() - started - upload_s
    finally:
        server.stop()
    peaks = sampler.peaks
    assert job["state"] == "completed", job["error"]
    roles = {"celery": "worker", "spawn_main": "reader", "-m app": "api"}
    by_role: dict[str, float] = {}
    for command, mb in peaks.values():
        role = next((r for key, r in roles.items() if key in command), "other")
        by_role[role] = max(by_role.get(role, 0.0), mb)
    registration = job["metrics"]["registration"]
    area = job["params"]["area"]
    print(
        f"{rows * per_row:5d} frames: mosaic {area[2]} x {area[3]} px, upload {upload_s:.1f} s, "
        f"job {job_s:.1f} s, residual max {registration['residual_px']['max']:.2f} px, "
        + ", ".join(f"{role} {mb:.0f} MB" for role, mb in sorted(by_role.items()))
    )
    return by_role


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--frames-per-row", type=int, nargs="+", default=[25, 250])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sequence-"))
    results = [run(work, args.rows, n) for n in args.frames_per_row]
    first, last = results[0], results[-1]
    ratio = {role: last[role] / first[role] for role in first if role in last}
    frames = args.frames_per_row[-1] / args.frames_per_row[0]
    print(
        f"peak RSS ratio for {frames:.0f}x the frames: "
        + ", ".join(f"{role} {r:.2f}" for role, r in sorted(ratio.items()))
    )


if __name__ == "__main__":
    main()
