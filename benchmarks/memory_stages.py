"""Where a job's peak RSS comes from: the engine function running at each step of its growth.

Writes ``memory.py``'s synthetic slide (``--size``, ``--tissue-share``), runs one job with
``--model`` in this process, as the Celery tasks would one after the other
(``tests.fixtures.run_job``), and samples every 20 ms this process's RSS and the innermost
frames of the main thread's stack that lie in ``workers/`` or ``models/``. Prints the job's
peak RSS (``ru_maxrss``), the stack at the sampled peak, and each time RSS first passes
another 50 MiB, with the frames running then.

    .venv/bin/python benchmarks/memory_stages.py --size 20000 --model sr-x2
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.memory import write_slide
from workers.settings import ZOO_DIR, Settings

REPO = Path(__file__).resolve().parents[1]
ENGINE = (str(REPO / "workers"), str(REPO / "models"))
STEP_MB = 50


def rss_mb() -> float:
    """This process's resident memory now."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


class StackSampler:
    """Samples RSS and the main thread's engine frames: ``with StackSampler() as s``."""

    def __init__(self) -> None:
        self.main = threading.get_ident()
        self.samples: list[tuple[float, float, list[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _frames(self) -> list[str]:
        frame = sys._current_frames().get(self.main)
        return [
            f"{Path(f.filename).name}:{f.lineno} {f.name}"
            for f in traceback.extract_stack(frame)
            if f.filename.startswith(ENGINE)
        ]

    def _sample(self) -> None:
        started = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - started, rss_mb(), self._frames()))
            time.sleep(0.02)

    def __enter__(self) -> StackSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def run(slide: Path, model: str, root: Path) -> StackSampler:
    """One job on ``slide`` in this process, sampled."""
    from tests import fixtures
    from workers.store import Store

    settings = Settings(data_dir=root, models_dirs=[ZOO_DIR])
    store = Store(settings.resolved_database_url)
    fixtures.add_job(store, settings, slide, "stages", model)
    with StackSampler() as sampler:
        fixtures.run_job(store, settings, "stages")
    store.dispose()
    return sampler


def main() -> None:
    """Write the slide, run the job sampled, print the growth of its RSS."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--model", default="sr-x2")
    parser.add_argument("--tissue-share", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as folder:
        root = Path(folder)
        write_slide(root / "slide.tif", args.size, args.tissue_share)
        started = time.perf_counter()
        samples = run(root / "slide.tif", args.model, root).samples
        wall = time.perf_counter() - started
    at, peak, frames = max(samples, key=lambda sample: sample[1])
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.model} on {args.size} px: job {wall:.0f} s, peak RSS {maxrss:.0f} MiB "
        f"(ru_maxrss); sampled peak {peak:.0f} MiB at {at:.1f} s in:"
    )
    print("  " + "\n  ".join(frames or ["(outside the engine)"]))
    print(f"RSS growth, every {STEP_MB} MiB (time, RSS, innermost frames):")
    last = 0.0
    for t, mb, stack in samples:
        if mb >= last + STEP_MB:
            print(f"  {t:7.1f} s {mb:6.0f} MiB  {' < '.join(reversed(stack[-4:])) or '-'}")
            last = mb


if __name__ == "__main__":
    main()
