"""``auto`` end to end with the shipped models on real tissue with known blurred patches.

The slide is scikit-image's IHC image, mirrored to 3072 x 2048 (all tissue), with a
defocus, a motion and a mixed patch synthesised by the training library's forward models
(20 % of the tissue); it is stored as a JPEG-tiled pyramidal TIFF like a scanner's.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from skimage.metrics import structural_similarity

from tests import fixtures
from workers.engine.blurmap import CellGrid
from workers.engine.geometry import Box
from workers.engine.labels import read_label
from workers.engine.omezarr import read_box
from workers.engine.readers import open_slide
from workers.layout import job_paths
from workers.planning import cells_from_params
from workers.settings import ZOO_DIR, Settings
from workers.store import Store

pytestmark = pytest.mark.slow


@dataclass
class AutoRun:
    settings: Settings
    store: Store
    slide: fixtures.PatchedSlide
    input_pixels: np.ndarray
    output: Path
    job: dict


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory: pytest.TempPathFactory) -> AutoRun:
    root = tmp_path_factory.mktemp("auto")
    slide = fixtures.patched_slide()
    path = fixtures.write_pyramid_tiff(root / "patched.tif", slide.pixels)
    settings = Settings(data_dir=root, models_dirs=[ZOO_DIR])
    store = Store(settings.resolved_database_url)
    fixtures.add_job(store, settings, path, "auto", "auto")
    fixtures.run_job(store, settings, "auto")
    height, width = slide.truth.shape
    input_pixels = open_slide(path).read_region((0, 0), 0, (width, height))
    return AutoRun(
        settings,
        store,
        slide,
        input_pixels,
        job_paths(settings, "auto").output,
        store.get_job("auto"),
    )


def truth_cover(truth: np.ndarray, cells: CellGrid) -> np.ndarray:
    rows, cols = cells.shape
    cover = np.zeros((rows, cols))
    for r in range(rows):
        for c in range(cols):
            cover[r, c] = (truth[cells.cell_box(r, c).slices()] > 0).mean()
    return cover


def test_blur_map_finds_the_patches(auto_run: AutoRun) -> None:
    cells = cells_from_params(auto_run.job["params"])
    found = read_label(auto_run.output, "blur")
    cover = truth_cover(auto_run.slide.truth, cells)
    blurred, sharp = cover > 0.9, cover < 0.1
    predicted = found >= 2
    recall = (predicted & blurred).sum() / blurred.sum()
    precision = (predicted & blurred).sum() / max((predicted & (blurred | sharp)).sum(), 1)
    print(
        f"blurred vs not, {cells.cell_px} px cells: recall {recall:.3f}, precision {precision:.3f}"
    )
    assert recall >= 0.9 and precision >= 0.9
    for (x, y, w, h), value in auto_run.slide.patches:
        inner = cells.cells_under(Box(x + 256, y + 256, w - 512, h - 512))
        classes = found[inner]
        print(f"patch of class {value}: cells found as {np.bincount(classes.ravel(), minlength=5)}")
        assert (classes == value).mean() >= 0.5


def distance_to_patches(shape: tuple[int, int], patches) -> np.ndarray:
    from scipy import ndimage

    inside = np.zeros(shape, dtype=bool)
    for (x, y, w, h), _ in patches:
        inside[y : y + h, x : x + w] = True
    return ndimage.distance_transform_edt(~inside)


def test_tissue_far_from_patches_is_bit_identical(auto_run: AutoRun) -> None:
    height, width = auto_run.slide.truth.shape
    output = read_box(auto_run.output, Box(0, 0, width, height))
    far = distance_to_patches((height, width), auto_run.slide.patches) > 512
    changed = np.any(output != auto_run.input_pixels, axis=2)
    print(f"pixels changed more than 512 px from a patch: {int(changed[far].sum())}")
    assert not changed[far].any()
    assert changed.mean() < 0.6


def test_restored_patches_are_closer_to_the_sharp_tissue(auto_run: AutoRun) -> None:
    height, width = auto_run.slide.truth.shape
    output = read_box(auto_run.output, Box(0, 0, width, height))
    for (x, y, w, h), value in auto_run.slide.patches:
        box = (slice(y, y + h), slice(x, x + w))
        sharp = auto_run.slide.sharp[box]
        before = structural_similarity(sharp, auto_run.input_pixels[box], channel_axis=2)
        after = structural_similarity(sharp, output[box], channel_axis=2)
        print(f"patch of class {value}: SSIM to sharp {before:.3f} -> {after:.3f}")
        assert after > before


def test_sharp_tissue_around_the_patches_is_never_made_worse(auto_run: AutoRun) -> None:
    """Per 64 px block of sharp tissue near a patch: no more error against the truth than before.

    (A motion PSF applied to sharp tissue beside its patch rings: 3 dB lost over the slide.)
    """
    height, width = auto_run.slide.truth.shape
    output = read_box(auto_run.output, Box(0, 0, width, height)).astype(np.float64)
    sharp = auto_run.slide.sharp.astype(np.float64)
    before = ((auto_run.input_pixels - sharp) ** 2).mean(axis=2)
    after = ((output - sharp) ** 2).mean(axis=2)
    blocks = (height // 64, 64, width // 64, 64)
    outside = (auto_run.slide.truth == 0).reshape(blocks).all(axis=(1, 3))
    added = (after - before).reshape(blocks).mean(axis=(1, 3))[outside]
    print(f"sharp blocks: worst added squared error {added.max():.2f} (grey levels^2)")
    assert added.max() < 2.0


def test_labels_open_in_an_independent_reader(auto_run: AutoRun) -> None:
    nodes = list(Reader(parse_url(str(auto_run.output)))())
    labels = {
        node.metadata.get("name"): node for node in nodes if "image-label" in node.zarr.root_attrs
    }
    assert {"blur", "restored"} <= set(labels)
    image_scale = nodes[0].metadata["coordinateTransformations"][0][0]["scale"]
    blur_scale = labels["blur"].metadata["coordinateTransformations"][0][0]["scale"]
    cell_px = auto_run.job["params"]["cell_px"]
    assert blur_scale[1:] == pytest.approx([cell_px * s for s in image_scale[1:]])
    restored = read_label(auto_run.output, "restored")
    blur = read_label(auto_run.output, "blur")
    assert set(np.unique(restored)) <= {0, 1, 2, 3}
    assert (restored[blur == 2] == 1).mean() > 0.5  # defocus cells got deblur-defocus


def test_metrics_report_what_was_found_and_done(auto_run: AutoRun) -> None:
    metrics = auto_run.job["metrics"]
    truth_share = (auto_run.slide.truth > 0).mean()
    qc = metrics["qc"]
    print(f"blurred share: found {qc['blurred_share']:.3f}, true {truth_share:.3f}")
    assert abs(qc["blurred_share"] - truth_share) < 0.06
    assert qc["rescan_recommended"]
    boxes = [r["box"] for r in qc["worst_regions"]]
    for (x, y, w, h), _ in auto_run.slide.patches:
        assert any(Box(*b).intersect(Box(x, y, w, h)) for b in boxes)
    tiles = metrics["tiles"]
    assert tiles["total"] == auto_run.job["tiles_total"]
    restored = sum(n for model, n in tiles["by_model"].items() if model != "none")
    assert 0 < restored < tiles["total"]  # 4 of the 6 tiles of 1024 px hold a patch
    assert set(tiles["by_model"]) <= {
        "none",
        "deblur-defocus",
        "deblur-motion",
        "deblur-motion+deblur-defocus",
    }
    for stage in ("classify", "read", "restore", "blend", "write", "pyramid"):
        assert metrics["timings"][stage] >= 0
    with (job_paths(auto_run.settings, "auto").tile_table).open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == tiles["total"]
    done = [r for r in rows if r["model"]]
    gains = [float(r["tenengrad_after"]) > float(r["tenengrad_before"]) for r in done]
    assert np.mean(gains) > 0.8


def test_blurred_tissue_at_a_tissue_edge_is_improved_not_collapsed(tmp_path: Path) -> None:
    """``deblur-defocus`` collapses on a tile with a constant border; routing feeds it none."""
    from models.training import degradations as deg

    sharp = fixtures.patched_slide().sharp[:2048, :2048].copy()
    sharp[:, 1300:] = 243  # glass right of x = 1300 and below y = 1500
    sharp[1500:, :] = 243
    unit = sharp.astype(np.float32) / 255.0
    blurred = np.clip(np.rint(deg.convolve(unit, deg.defocus_psf(4.0, "disk")) * 255), 0, 255)
    pixels = sharp.copy()
    pixels[200:1500, 200:1300] = blurred[200:1500, 200:1300]  # defocus up to the tissue's edge
    path = fixtures.write_pyramid_tiff(tmp_path / "edge.tif", pixels)
    settings = Settings(data_dir=tmp_path / "data", models_dirs=[ZOO_DIR])
    settings.data_dir.mkdir()
    store = Store(settings.resolved_database_url)
    fixtures.add_job(store, settings, path, "edge", "auto")
    fixtures.run_job(store, settings, "edge")
    output = read_box(job_paths(settings, "edge").output, Box(0, 0, 2048, 2048))
    scanned = open_slide(path).read_region((0, 0), 0, (2048, 2048))
    bands = {
        "whole patch": (slice(200, 1500), slice(200, 1300)),
        "band at the right edge": (slice(200, 1500), slice(1044, 1300)),
        "band at the bottom edge": (slice(1244, 1500), slice(200, 1300)),
    }
    for name, band in bands.items():
        before = structural_similarity(sharp[band], scanned[band], channel_axis=2)
        after = structural_similarity(sharp[band], output[band], channel_axis=2)
        print(f"{name}: SSIM to sharp {before:.3f} -> {after:.3f}")
        assert after > before + 0.05
    glass = (slice(1600, 2048), slice(1400, 2048))
    assert np.array_equal(output[glass], scanned[glass])
    store.dispose()
