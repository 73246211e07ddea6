"""The server's whole job against the pipeline a user would write instead, alternated.

The peer pipeline (issue 26): OpenSlide reads, MONAI's ``sliding_window_inference`` with
Gaussian blending, ome-zarr-py's writer, and the same ONNX model in ONNX Runtime. As a
competent user would write it:

- read level 0 with ``openslide.OpenSlide.read_region`` in windows of ``--window-px``
  output pixels per side (``--window-px // scale`` input pixels; default 4096, so the
  default 4096 px slide with a scale-1 model is read whole, the peer's best case: no
  margins read twice), each with the model's ``halo_px`` of context around it, cropped
  after inference;
- run ``sliding_window_inference(inputs, roi_size=(s, s), sw_batch_size=b, predictor=...,
  overlap=0.25, mode="gaussian")`` on each window, ``s`` the server's default tile (the
  manifest's ``tile_px`` plus twice its ``halo_px``), ``b`` the server's batch for it; the
  predictor is :class:`models.runtime.OnnxModel` (the server's session options and thread
  count from :class:`workers.settings.Settings`). MONAI 1.6 takes predictors whose output
  is ``scale`` times larger than their input, so the super-resolution models need no
  special case;
- gather the restored level 0 in memory (uint8) and write it as a pyramidal OME-Zarr with
  ``ome_zarr.writer.write_image`` (its default format and downsampling, the server's
  number of levels and ``chunk_px`` chunks).

Builds the all-tissue slide of ``benchmarks/throughput.py`` (``--side`` px square, default
4096: 16.8 Mpx), then for ``--rounds`` rounds runs the server's whole job
(``throughput.job_in_child``: the functions the Celery tasks call, default settings) and
the peer pipeline, each in a fresh child process (in swapped order every other round).
Each reports its wall time from start to written output (opening the model included) and
its peak RSS (``ru_maxrss``). Prints per round the server's and the peer's Mpx/s (slide
pixels over wall time) and their ratio, and the median ratio; checks once that the two
outputs agree (PSNR on a central crop of level 0) so that both did the same work.

    pip install -e '.[worker,train,bench]'
    .venv/bin/python benchmarks/peer_pipeline.py [--model deblur-defocus] [--side 4096]
        [--rounds 3] [--window-px 4096]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.stages import stage_line
from benchmarks.throughput import all_tissue_slide, in_child, job_in_child, server_batch
from models.registry import discover
from models.runtime import OnnxModel
from workers.settings import ZOO_DIR, Settings

if TYPE_CHECKING:
    from openslide import OpenSlide

CROP_PX = 1024  # side of the central crop the two outputs are compared on


def windows(width: int, height: int, window_px: int) -> list[tuple[int, int, int, int]]:
    """(x, y, width, height) of the level-0 windows that cover the slide."""
    return [
        (x, y, min(window_px, width - x), min(window_px, height - y))
        for y in range(0, height, window_px)
        for x in range(0, width, window_px)
    ]


def restore_window(
    slide: OpenSlide,
    window: tuple[int, int, int, int],
    margin: int,
    model: OnnxModel,
    roi_px: int,
    batch: int,
) -> np.ndarray:
    """One window read with ``margin`` px of context, slid over by MONAI, cropped: (c, y, x)."""
    import torch
    from monai.inferers import sliding_window_inference

    x, y, w, h = window
    width, height = slide.dimensions
    x0, y0 = max(0, x - margin), max(0, y - margin)
    x1, y1 = min(width, x + w + margin), min(height, y + h + margin)
    rgb = np.asarray(slide.read_region((x0, y0), 0, (x1 - x0, y1 - y0)))[..., :3]
    inputs = torch.from_numpy(rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    with torch.no_grad():
        restored = sliding_window_inference(
            inputs,
            roi_size=(roi_px, roi_px),
            sw_batch_size=batch,
            predictor=lambda tiles: torch.from_numpy(model(tiles.numpy())),
            overlap=0.25,
            mode="gaussian",
        )
    s = model.scale
    core = restored[0, :, (y - y0) * s : (y - y0 + h) * s, (x - x0) * s : (x - x0 + w) * s]
    return np.clip(np.rint(core.numpy() * 255.0), 0, 255).astype(np.uint8)


def run_peer(slide_path: str, model_name: str, out: str, window_px: str) -> dict:
    """The peer pipeline in this process; its figures (the child side of ``in_child``)."""
    import openslide
    import torch  # noqa: F401  (imported before the clock starts, as the server's are)
    from monai.inferers import sliding_window_inference  # noqa: F401
    from ome_zarr.writer import write_image

    from workers.engine.omezarr import pyramid_sizes

    started = time.perf_counter()
    settings = Settings()
    installed = discover([ZOO_DIR])[model_name]
    model = OnnxModel(installed, settings.ort_providers, settings.ort_threads)
    roi_px = model.tile_px + 2 * model.halo_px
    s = model.scale
    slide = openslide.OpenSlide(slide_path)
    width, height = slide.dimensions
    restored = np.zeros((3, height * s, width * s), np.uint8)
    for x, y, w, h in windows(width, height, max(1, int(window_px) // s)):
        pixels = restore_window(
            slide, (x, y, w, h), model.halo_px, model, roi_px, server_batch(model, settings)
        )
        restored[:, y * s : (y + h) * s, x * s : (x + w) * s] = pixels
    inferred = time.perf_counter()
    levels = len(pyramid_sizes(width * s, height * s))
    write_image(
        restored,
        zarr.open_group(out, mode="w"),
        scale_factors=[2**k for k in range(1, levels)],
        axes="cyx",
        storage_options={"chunks": (3, settings.chunk_px, settings.chunk_px)},
    )
    done = time.perf_counter()
    return {
        "wall_s": done - started,
        "slide_px": width * height,
        "stages": {"read + infer": inferred - started, "write": done - inferred},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def level0(path: Path) -> zarr.Array:
    """Level 0 of an OME-Zarr image, NGFF 0.4 (the server's) or 0.5 (ome-zarr-py's default)."""
    group = zarr.open_group(str(path), mode="r")
    attrs = group.attrs.asdict()
    multiscales = attrs.get("ome", attrs)["multiscales"]
    array = group[multiscales[0]["datasets"][0]["path"]]
    assert isinstance(array, zarr.Array)
    return array


def central_psnr(server: Path, peer: Path) -> float:
    """PSNR (dB) between the two outputs' level 0 on a central crop of ``CROP_PX``."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = level0(server), level0(peer)
    assert a.shape == b.shape, (a.shape, b.shape)
    side = min(CROP_PX, a.shape[1] // 2, a.shape[2] // 2)
    y0, x0 = (a.shape[1] - side) // 2, (a.shape[2] - side) // 2
    crop = (slice(None), slice(y0, y0 + side), slice(x0, x0 + side))
    return float(peak_signal_noise_ratio(a[crop], b[crop], data_range=255))


def one_round(slide: Path, args: argparse.Namespace, root: Path, k: int) -> tuple[dict, dict]:
    """The server's job and the peer pipeline once each (peer first on odd rounds)."""
    runs = {
        "server": lambda: job_in_child(slide, args.model, root / f"job{k}"),
        "peer": lambda: in_child(
            "benchmarks.peer_pipeline",
            "run_peer",
            str(slide),
            args.model,
            str(root / f"peer{k}.zarr"),
            str(args.window_px),
        ),
    }
    order = ["server", "peer"] if k % 2 == 0 else ["peer", "server"]
    figures = {name: runs[name]() for name in order}
    return figures["server"], figures["peer"]


def describe(name: str, figures: dict) -> str:
    """``server 1.06 Mpx/s (15.8 s, peak RSS 877 MB; read 0.6, ...)``."""
    mpx = figures["slide_px"] / figures["wall_s"] / 1e6
    return (
        f"{name} {mpx:.3f} Mpx/s ({figures['wall_s']:.1f} s, peak RSS "
        f"{figures['peak_rss_mb']:.0f} MB; {stage_line(figures['stages'])})"
    )


def main() -> None:
    """Alternate the server's job and the peer pipeline; print Mpx/s and their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="deblur-defocus")
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window-px", type=int, default=4096)
    args = parser.parse_args()
    settings = Settings()
    model = OnnxModel(discover([ZOO_DIR])[args.model], settings.ort_providers, 1)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        slide = all_tissue_slide(root, args.side)
        print(
            f"{args.model}: roi {model.tile_px} + 2 x {model.halo_px} px, batch "
            f"{server_batch(model, settings)}, overlap 0.25, Gaussian; slide {args.side} x "
            f"{args.side} px of tissue; peer windows {args.window_px} output px"
        )
        ratios = []
        for k in range(args.rounds):
            server, peer = one_round(slide, args, root, k)
            ratios.append(peer["wall_s"] / server["wall_s"])
            print(f"round {k}: {describe('server', server)}")
            print(f"         {describe('peer', peer)}; server / peer {ratios[-1]:.3f}")
            if k == 0:
                psnr = central_psnr(root / "job0/jobs/bench/output.zarr", root / "peer0.zarr")
                print(f"         outputs agree: PSNR server vs peer {psnr:.1f} dB (central crop)")
            shutil.rmtree(root / f"job{k}")
            shutil.rmtree(root / f"peer{k}.zarr")
        print(f"median server / peer throughput: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
