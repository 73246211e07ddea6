"""What ``auto`` costs against forcing ``deblur-defocus`` on every tile, measured alternated.

Builds the test slide of real IHC tissue (scikit-image's image, mirrored) with a defocus,
a motion and a mixed patch (20 % of the tissue; ``--scale 2``: 6144 x 4096 px), stores it
as a JPEG-tiled pyramidal TIFF and runs whole jobs in this process (the same functions the
Celery tasks call, one after the other: the cost of the work, without queueing), ``auto``
and ``deblur-defocus`` alternated for ``--rounds`` rounds. Prints per round the seconds of
each job, the share of tiles ``auto`` restored, the seconds it spent classifying, and the
ratio of the medians against the issue's bound: restored share + 0.15.

    .venv/bin/python benchmarks/auto_cost.py [--scale 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.stages import stage_line
from tests import fixtures
from workers.settings import ZOO_DIR, Settings
from workers.store import Store


def changed_share(root: Path, tag: str, slide: Path, truth_shape: tuple[int, int]) -> float:
    """Share of the slide's pixels that the job's output changed (what ``auto`` restored)."""
    from workers.engine.geometry import Box
    from workers.engine.omezarr import read_box
    from workers.engine.readers import open_slide

    height, width = truth_shape
    out = read_box(root / tag / "jobs" / tag / "output.zarr", Box(0, 0, width, height))
    before = open_slide(slide).read_region((0, 0), 0, (width, height))
    return float((out != before).any(axis=2).mean())


def run(root: Path, slide: Path, model: str | list[str], tag: str) -> tuple[float, dict]:
    settings = Settings(data_dir=root / tag, models_dirs=[ZOO_DIR])
    settings.data_dir.mkdir()
    store = Store(settings.resolved_database_url)
    fixtures.add_job(store, settings, slide, tag, model)
    started = time.perf_counter()
    fixtures.run_job(store, settings, tag)
    seconds = time.perf_counter() - started
    job = store.get_job(tag)
    store.dispose()
    return seconds, job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        patched = fixtures.patched_slide(scale=args.scale)
        slide = fixtures.write_pyramid_tiff(root / "patched.tif", patched.pixels)
        height, width = patched.truth.shape
        print(f"slide {width} x {height} px, blurred share {(patched.truth > 0).mean():.3f}")
        auto_s, forced_s, shares = [], [], []
        for k in range(args.rounds):
            a, job = run(root, slide, "auto", f"auto{k}")
            f, _ = run(root, slide, "deblur-defocus", f"forced{k}")
            tiles = job["metrics"]["tiles"]
            restored = tiles["total"] - tiles["by_model"].get("none", 0)
            share = restored / tiles["total"]
            auto_s.append(a)
            forced_s.append(f)
            shares.append(share)
            timings = job["metrics"]["timings"]
            pixels = changed_share(root, f"auto{k}", slide, patched.truth.shape)
            stages = stage_line(timings)
            print(
                f"round {k}: auto {a:.1f} s (restored {restored}/{tiles['total']} tiles = "
                f"{share:.3f}, {pixels:.3f} of the pixels; stages (s): {stages}), "
                f"deblur-defocus everywhere {f:.1f} s, ratio {a / f:.3f}"
            )
        ratio = statistics.median(auto_s) / statistics.median(forced_s)
        bound = statistics.median(shares) + 0.15
        print(f"median ratio auto / forced {ratio:.3f}; bound (restored share + 0.15) {bound:.3f}")
        print(f"speed-up of auto {1 / ratio:.2f}x")


if __name__ == "__main__":
    main()
