"""Worker processes decode under a memory limit: a file that needs more fails, not the host."""

from __future__ import annotations

import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from tests.fixtures import tissue_image

MIB = 2**20
HEADROOM_MB = 200


def test_a_worker_process_decodes_under_its_memory_limit(tmp_path: Path) -> None:
    big = np.full((6000, 6000, 4), 255, np.uint8)  # 144 MB decoded, 252 MB with its RGB copy
    big[::9, ::7] = np.random.default_rng(0).integers(0, 255, (667, 858, 4))
    Image.fromarray(big, "RGBA").save(tmp_path / "big.png")
    Image.fromarray(tissue_image(300, 400)).save(tmp_path / "small.png")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as child:
        outcome = child.submit(_as_a_worker_child, str(tmp_path)).result(timeout=120)
    print(
        f"worker child limited to {outcome['limit_mb']} MB (RLIMIT_DATA): "
        f"{outcome['array']} for a {2 * HEADROOM_MB} MB array; big PNG: {outcome['big']}"
    )
    assert outcome["array"] == "MemoryError"
    assert "needs more memory than readers may use" in outcome["big"]
    assert outcome["small"] == "read"


def _as_a_worker_child(folder: str) -> dict[str, object]:
    """In a fresh process: what Celery does for each pool child, then decode two images."""
    from celery.signals import worker_process_init

    import workers.tasks  # noqa: F401 - connects the worker's signal receivers
    from workers.engine.readers import open_slide
    from workers.errors import TooLarge
    from workers.settings import get_settings

    data_mb = int(re.search(r"VmData:\s+(\d+)", Path("/proc/self/status").read_text())[1]) // 1024
    os.environ["RESTORE_WORKER_MEMORY_MB"] = str(data_mb + HEADROOM_MB)
    get_settings.cache_clear()
    worker_process_init.send(sender=None)
    outcome: dict[str, object] = {"limit_mb": data_mb + HEADROOM_MB}
    try:
        np.ones(2 * HEADROOM_MB * MIB, np.uint8)
        outcome["array"] = "allocated"
    except MemoryError:
        outcome["array"] = "MemoryError"
    for name in ("big", "small"):
        try:
            open_slide(Path(folder) / f"{name}.png")
            outcome[name] = "read"
        except TooLarge as exc:
            outcome[name] = exc.message
    return outcome
