"""The nuclei counter against human annotations, and what restoring blurred tissue does to it.

On ``../shared/data/nuclei/gbm40`` (40 H&E tiles of 512 px with a human seed per nucleus;
taken as 0.25 um/px, 40x): detection precision, recall and F1 (a detection matches an
unused seed within 8 px, about a third of a nucleus) and the mean absolute count error,
for the tiles the counter's settings were chosen on (01-20) and the held-out ones (21-40).

Then, for four held-out tiles: the count on the sharp tile, on the tile blurred with a 4 px
disk (mirror-padded), and on that blurred tile restored by ``deblur-defocus``; restoration
helps where the restored count is closer to the sharp count than the blurred count is.

Last, fluorescence: ``nuclei/coelho2009/gnf`` (Hoechst-stained U2OS nuclei with instance
labels, no pixel size): the hook's calibration (dark background, slide threshold, nuclei
size measured) and counter, a detection matching a labelled centroid within 15 px.

    .venv/bin/python benchmarks/nuclei_validation.py
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workers.engine import nuclei

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei" / "gbm40"
FLUORESCENCE = DATA.parent / "coelho2009" / "gnf"
FLUORESCENCE_MATCH_PX = 15.0  # these nuclei are about 110 px across
MATCH_PX = 8.0
MPP = 0.25


def load(index: int) -> tuple[np.ndarray, np.ndarray]:
    """One tile and its seeds (x, y)."""
    image = tifffile.imread(DATA / "images" / f"{index:02d}.tif")
    with (DATA / "seeds" / f"{index:02d}_seeds.csv").open() as handle:
        seeds = np.array([[float(r["x"]), float(r["y"])] for r in csv.DictReader(handle)])
    return image, seeds


class Tally:
    """Detections against annotations over images: precision, recall, F1, count error."""

    def __init__(self) -> None:
        self.found = self.true = self.matched = 0
        self.errors: list[float] = []

    def add(self, found: np.ndarray, truth: np.ndarray, radius_px: float) -> None:
        """One image's detected and annotated centres (x, y)."""
        self.matched += nuclei.match(found, truth, radius_px)
        self.found += len(found)
        self.true += len(truth)
        self.errors.append(abs(len(found) - len(truth)) / len(truth))

    def figures(self) -> dict[str, float]:
        """The figures so far."""
        precision, recall = self.matched / self.found, self.matched / self.true
        return {
            "images": len(self.errors),
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall),
            "count_error": float(np.mean(self.errors)),
        }


def score(indices: range) -> dict[str, float]:
    """Precision, recall, F1 and mean absolute count error over some tiles."""
    tally = Tally()
    for index in indices:
        image, seeds = load(index)
        tally.add(nuclei.detect(image, MPP).centroids, seeds, MATCH_PX)
    return tally.figures()


def restored_counts(indices: range) -> list[tuple[int, int, int, int]]:
    """(tile, sharp count, blurred count, restored count) with ``deblur-defocus``."""
    from models.registry import discover
    from models.runtime import OnnxModel
    from models.training import degradations as deg
    from workers.settings import ZOO_DIR

    model = OnnxModel(discover([ZOO_DIR])["deblur-defocus"], ["CPUExecutionProvider"])
    halo = model.halo_px
    rows = []
    for index in indices:
        sharp, _ = load(index)
        pad = 32
        padded = np.pad(
            sharp.astype(np.float32) / 255.0, ((pad, pad), (pad, pad), (0, 0)), "symmetric"
        )
        blurred = deg.convolve(padded, deg.defocus_psf(4.0, "disk"))[pad:-pad, pad:-pad]
        blurred_u8 = np.clip(np.rint(blurred * 255.0), 0, 255).astype(np.uint8)
        model_in = np.pad(blurred_u8, ((halo, halo), (halo, halo), (0, 0)), "symmetric")
        out = model(model_in.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)[0]
        out = out[:, halo:-halo, halo:-halo].transpose(1, 2, 0)
        restored = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
        counts = [nuclei.detect(image, MPP).count for image in (sharp, blurred_u8, restored)]
        rows.append((index, *counts))
    return rows


def score_fluorescence() -> dict[str, float]:
    """The ``nuclei-count`` hook's calibration and counter on Coelho 2009 (no pixel size)."""
    from PIL import Image
    from scipy import ndimage

    from workers.hooks.nuclei_count import NucleiCount

    hook = NucleiCount()
    tally = Tally()
    for path in sorted((FLUORESCENCE / "images").glob("*.png")):
        label_path = FLUORESCENCE / "labels" / path.name
        if not label_path.exists():
            continue
        image = np.asarray(Image.open(path))[..., :3]
        labels = np.asarray(Image.open(label_path))
        ids = np.unique(labels)[1:]
        centres = ndimage.center_of_mass(labels > 0, labels, ids)
        truth = np.array([[x, y] for y, x in centres])
        calibration = hook.calibrate([image], None)
        found = nuclei.detect(
            image,
            None,
            fluorescence=calibration["fluorescence"],
            threshold=calibration["threshold"],
            radius_um=calibration["radius_um"],
        )
        tally.add(found.centroids, truth, FLUORESCENCE_MATCH_PX)
    return tally.figures()


def main() -> None:
    """Print the figures."""
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing")
    for name, indices in (
        ("settings chosen on 01-20", range(1, 21)),
        ("held out 21-40", range(21, 41)),
    ):
        figures = score(indices)
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    helped = 0
    for index, sharp, blurred, restored in restored_counts(range(21, 25)):
        better = abs(restored - sharp) < abs(blurred - sharp)
        helped += better
        print(
            f"tile {index:02d}: sharp {sharp}, blurred (4 px disk) {blurred}, restored {restored}"
        )
    print(f"restoration brought the count closer to the sharp count on {helped} of 4 tiles")
    if FLUORESCENCE.is_dir():
        figures = score_fluorescence()
        print(
            "fluorescence (coelho2009/gnf, no pixel size): "
            + ", ".join(f"{k} {v:.3f}" for k, v in figures.items())
        )


if __name__ == "__main__":
    main()
