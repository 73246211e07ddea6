"""How blur routing labels real images: real defocus, real sharp tissue, real tissue with patches.

Runs the server's own classification and decision (cells, classifier, slide-relative
sharpness) on each image as if it were uploaded alone, and prints:

- real out-of-focus images (``../shared/data/focus``): share of tissue cells labelled blurred;
- real sharp images (H&E/IHC tiles, the Aperio slide, fluorescence): share labelled in focus;
- held-out real H&E mirrored to 2048 px with one synthesised blurred patch each (defocus
  disk 3 px, motion 12 px, or both): recall and precision of "blurred vs not" per cell.

    .venv/bin/python benchmarks/blur_routing_real.py [--classifier models/zoo/blur-classifier]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.manifest import load_manifest
from models.registry import InstalledModel
from models.runtime import OnnxClassifier, OnnxModel
from models.training import degradations as deg
from models.training.data import discover_images, is_held_out
from tests.engine.fakes import ArrayReader
from workers.engine import pipeline
from workers.engine.blurmap import IN_FOCUS, CellGrid
from workers.engine.classification import assemble_features, classify_block
from workers.engine.geometry import Box
from workers.engine.readers import open_slide
from workers.engine.routing import RoutingRules, decide_cells

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CELL_PX, BLOCK_CELLS = 256, 8


def load(path: Path) -> np.ndarray:
    reader = open_slide(path)
    return reader.read_region((0, 0), 0, (reader.info.width, reader.info.height))


def decide(pixels: np.ndarray, classifier: OnnxClassifier) -> np.ndarray:
    """Class per cell, as a job would decide it (tissue detected on a thumbnail)."""
    reader = ArrayReader(pixels)
    tissue = pipeline.make_tissue_map(reader)
    cells = CellGrid(Box(0, 0, pixels.shape[1], pixels.shape[0]), CELL_PX, BLOCK_CELLS)
    blocks = [
        classify_block(reader, classifier, cells, i, tissue) for i in range(len(cells.blocks))
    ]
    return decide_cells(assemble_features(cells, blocks), RoutingRules()).classes


def labelled(paths: list[Path], classifier: OnnxClassifier, blurred: bool) -> tuple[int, int, int]:
    """(cells labelled as expected, tissue cells, images whose majority is as expected)."""
    right = total = images = 0
    for path in paths:
        classes = decide(load(path), classifier)
        tissue = classes > 0
        hits = (classes > IN_FOCUS) if blurred else (classes == IN_FOCUS)
        right += int((hits & tissue).sum())
        total += int(tissue.sum())
        images += int(tissue.any() and (hits & tissue).sum() > tissue.sum() / 2)
    return right, total, images


def patched(image: np.ndarray, kind: int) -> tuple[np.ndarray, np.ndarray]:
    size = 2048
    big = np.pad(
        image, ((0, size - image.shape[0]), (0, size - image.shape[1]), (0, 0)), "symmetric"
    )
    psf = [
        deg.defocus_psf(3.0, "disk"),
        deg.motion_psf(12.0, 0.0),
        deg.combine_psfs(deg.motion_psf(10.0, 90.0), deg.defocus_psf(2.5, "disk")),
    ][kind % 3]
    blurred = deg.convolve(big.astype(np.float32) / 255.0, psf)
    truth = np.zeros((size, size), dtype=bool)
    y, x = 500 + 97 * kind % 300, 640 + 61 * kind % 400
    truth[y : y + 768, x : x + 768] = True
    out = big.copy()
    out[truth] = np.clip(np.rint(blurred[truth] * 255), 0, 255).astype(np.uint8)
    return out, truth


def patch_scores(paths: list[Path], classifier: OnnxClassifier) -> tuple[int, int, int]:
    tp = fp = fn = 0
    for k, path in enumerate(paths):
        image = load(path)
        if min(image.shape[:2]) < 256:
            continue
        pixels, truth = patched(image[:512, :512], k)
        classes = decide(pixels, classifier)
        cells = CellGrid(Box(0, 0, 2048, 2048), CELL_PX, BLOCK_CELLS)
        cover = np.array(
            [[truth[cells.cell_box(r, c).slices()].mean() for c in range(8)] for r in range(8)]
        )
        found = classes > IN_FOCUS
        tp += int((found & (cover > 0.9)).sum())
        fn += int((~found & (cover > 0.9)).sum())
        fp += int((found & (cover < 0.1)).sum())
    return tp, fp, fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classifier", type=Path, default=Path("models/zoo/blur-classifier"))
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is not present")
    installed = InstalledModel(load_manifest(args.classifier / "manifest.json"), args.classifier)
    classifier = OnnxClassifier(OnnxModel(installed, ["CPUExecutionProvider"], threads=2))
    print(f"classifier {installed.manifest.version} ({args.classifier}), cells {CELL_PX} px")
    groups = {
        "real defocus (focus/bbbc006 z00), labelled blurred": (["focus"], True),
        "real sharp H&E/IHC tiles (he_tiles), labelled in focus": (["he_tiles"], False),
        "real sharp H&E (nuclei/gbm40), labelled in focus": (["nuclei/gbm40/images"], False),
        "real sharp Aperio slide (wsi), labelled in focus": (["wsi/CMU-1-Small-Region.svs"], False),
        "real sharp fluorescence (fluo_tiles, coelho2009), labelled in focus": (
            ["fluo_tiles", "nuclei/coelho2009/gnf/images"],
            False,
        ),
    }
    for name, (folders, blurred) in groups.items():
        paths = discover_images([DATA / f for f in folders])
        right, total, images = labelled(paths, classifier, blurred)
        share = right / max(total, 1)
        print(f"{name}: cells {right}/{total} = {share:.1%}; images {images}/{len(paths)}")
    held_out = [
        p
        for p in discover_images([DATA / "he_tiles", DATA / "nuclei/gbm40/images"])
        if is_held_out(p)
    ]
    tp, fp, fn = patch_scores(held_out, classifier)
    print(
        f"held-out real H&E with one blurred patch ({len(held_out)} images): "
        f"recall {tp / max(tp + fn, 1):.3f}, precision {tp / max(tp + fp, 1):.3f} "
        f"(tp {tp}, fp {fp}, fn {fn})"
    )


if __name__ == "__main__":
    main()
