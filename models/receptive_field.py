"""Measure how far a model looks: the halo a tile needs so that abutting tiles leave no seam.

A model's output at a pixel depends on the input around it. Beyond some distance that
dependence is below what an 8-bit output can show; that distance is the model's
receptive field, and the halo of context the server adds around every tile
(``halo_px`` in the manifest) must be at least that large.

The measure: invert a small square at the centre of a tile of tissue and find the
smallest distance (Chebyshev, in input pixels, a multiple of ``step_px``) beyond which no
output pixel moves by more than ``threshold`` (on a [0, 1] scale). The deblurring models
estimate a PSF from their whole input, so every output pixel moves a little; the threshold
(2/255 by default, below the error of the scanners' JPEG) separates that from the local
response.

    python -m models.receptive_field            # every shipped generator on test tissue
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Model = Callable[[np.ndarray], np.ndarray]  # float32 NCHW in [0, 1] -> NCHW, scale x larger

THRESHOLD = 2.0 / 255.0
SQUARE_PX = 4


def influence_radius(
    model: Model,
    tissue: np.ndarray,
    scale: int = 1,
    threshold: float = THRESHOLD,
    step_px: int = 8,
) -> int:
    """Receptive radius (input px) of ``model`` around the centre of ``tissue`` (H, W, 3).

    ``tissue`` is float32 in [0, 1]; its side should be at least twice the radius sought.
    """
    height, width = tissue.shape[:2]
    cy, cx = height // 2, width // 2
    half = SQUARE_PX // 2
    changed = tissue.copy()
    square = (slice(cy - half, cy + half), slice(cx - half, cx + half))
    changed[square] = 1.0 - changed[square]
    batch = np.stack([tissue, changed]).transpose(0, 3, 1, 2).astype(np.float32)
    before, after = model(np.ascontiguousarray(batch))
    moved = np.abs(after - before).max(axis=0)
    rows, cols = np.mgrid[0 : moved.shape[0], 0 : moved.shape[1]]
    distance = np.maximum(np.abs(rows / scale - cy), np.abs(cols / scale - cx))
    far_moved = [moved[distance >= r].max() for r in range(0, min(cy, cx), step_px)]
    for index, value in enumerate(far_moved):
        if value <= threshold:
            return index * step_px
    return min(cy, cx)


def probe_tissue(side_px: int = 512) -> dict[str, np.ndarray]:
    """Real tissue (scikit-image's IHC image, mirrored), sharp and blurred.

    The blurs reach the ends of the deblurring models' training ranges (disk radius 7 px,
    motion 30 px), where their receptive fields are widest.
    """
    from skimage import data

    from models.training import degradations as deg

    ihc = data.immunohistochemistry()
    pad = ((0, side_px), (0, side_px), (0, 0))
    sharp = np.pad(ihc, pad, "symmetric")[100 : 100 + side_px, 100 : 100 + side_px]
    unit = sharp.astype(np.float32) / 255.0
    psfs = {
        "defocus r=4": deg.defocus_psf(4.0, "disk"),
        "defocus r=7": deg.defocus_psf(7.0, "disk"),
        "motion 15 px": deg.motion_psf(15.0, 0.0),
        "motion 30 px": deg.motion_psf(30.0, 0.0),
    }
    blurred = {k: np.clip(deg.convolve(unit, psf), 0.0, 1.0) for k, psf in psfs.items()}
    return {"sharp": unit, **blurred}


def main() -> None:
    """Print each shipped generator's measured receptive radius next to its manifest halo."""
    from models.registry import discover
    from models.runtime import OnnxModel
    from workers.settings import ZOO_DIR

    for name, installed in sorted(discover([ZOO_DIR]).items()):
        if installed.manifest.kind != "generator":
            continue
        model = OnnxModel(installed, ["CPUExecutionProvider"])
        side = 512 if model.scale == 1 else 256
        radii = {
            kind: influence_radius(model, image, model.scale)
            for kind, image in probe_tissue(side).items()
        }
        print(name, f"halo_px {model.halo_px}", radii)


if __name__ == "__main__":
    main()
