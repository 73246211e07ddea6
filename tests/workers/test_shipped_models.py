"""Every shipped generator runs through the engine exactly as a job runs it."""

from pathlib import Path

import numpy as np
import pytest

from models.receptive_field import influence_radius, probe_tissue
from models.registry import discover
from models.runtime import load_model
from tests.engine.fakes import ArrayReader
from tests.fixtures import tissue_image
from workers.engine import omezarr, pipeline
from workers.engine.geometry import Box
from workers.engine.seams import boundary_lines, boundary_ratio
from workers.engine.tiling import TileGrid
from workers.settings import ZOO_DIR

GENERATORS = sorted(n for n, m in discover([ZOO_DIR]).items() if m.manifest.kind == "generator")


def test_the_zoo_ships_generators() -> None:
    assert {"deblur-motion", "deblur-defocus", "sr-x2", "sr-x4"} <= set(GENERATORS)


@pytest.mark.parametrize("name", GENERATORS)
def test_shipped_generator_restores_a_slide_smaller_than_one_tile(
    name: str, tmp_path: Path
) -> None:
    installed = discover([ZOO_DIR])[name]
    model = load_model(installed, ["CPUExecutionProvider"])
    manifest = installed.manifest
    image = tissue_image(150, 203, seed=3)  # odd sizes: padding to the size multiple
    grid = TileGrid(
        Box(0, 0, 203, 150),
        tile_px=manifest.tile_px,
        halo_px=manifest.halo_px,
        region_px=manifest.tile_px,
        scale=manifest.scale,
    )
    out_box = grid.output_box(grid.area)
    omezarr.create_store(tmp_path / "o.zarr", out_box.width, out_box.height, chunk_px=512)
    pipeline.restore_region(
        ArrayReader(image), pipeline.UniformPlan(model), grid, 0, tmp_path / "o.zarr"
    )
    out = omezarr.read_box(tmp_path / "o.zarr", out_box)
    assert out.shape == (150 * manifest.scale, 203 * manifest.scale, 3)
    reference = image.repeat(manifest.scale, 0).repeat(manifest.scale, 1).astype(float)
    assert np.abs(out.astype(float) - reference).mean() < 25, "output no longer resembles input"


@pytest.mark.parametrize("name", GENERATORS)
def test_manifest_halo_covers_the_measured_receptive_field(name: str) -> None:
    model = load_model(discover([ZOO_DIR])[name], ["CPUExecutionProvider"])
    side = 512 if model.scale == 1 else 256
    radii = {
        kind: influence_radius(model, image, model.scale)
        for kind, image in probe_tissue(side).items()
    }
    assert max(radii.values()) <= model.halo_px, radii
    assert max(radii.values()) > 0, "the measure sees no response at all"


def mirrored_ihc(side: int) -> np.ndarray:
    """Real tissue; the mirror lines (at 412 + 512 k) miss the tile boundaries."""
    from skimage import data

    ihc = data.immunohistochemistry()
    return np.pad(ihc, ((0, side), (0, side), (0, 0)), "symmetric")[
        100 : 100 + side, 100 : 100 + side
    ]


def whole_pass(model, image: np.ndarray) -> np.ndarray:
    """The model over the whole image in one call: the seamless reference."""
    halo, scale = model.halo_px, model.scale
    padded = np.pad(image, ((halo, halo), (halo, halo), (0, 0)), "symmetric")
    out = model(padded.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)[0]
    out = out[
        :, halo * scale : out.shape[1] - halo * scale, halo * scale : out.shape[2] - halo * scale
    ]
    return np.clip(np.rint(out.transpose(1, 2, 0) * 255.0), 0, 255)


@pytest.mark.parametrize("name", GENERATORS)
def test_abutting_tiles_leave_no_seam_on_real_tissue(name: str, tmp_path: Path) -> None:
    """Across tile (and region) boundaries the output's gradient energy is no higher than
    inside tiles: no higher (within 5 %) than in one pass of the model over the whole image,
    on the same lines; a halo of 0 fails this (by 7-9x for the SR models)."""
    from models.training import degradations as deg

    installed = discover([ZOO_DIR])[name]
    model = load_model(installed, ["CPUExecutionProvider"])
    tile = installed.manifest.tile_px
    image = mirrored_ihc(2 * tile)
    if name.startswith("deblur"):  # the blur the model is for (routing sends it nothing else)
        psf = deg.motion_psf(15.0, 0.0) if "motion" in name else deg.defocus_psf(4.0, "disk")
        blurred = deg.convolve(image.astype(np.float32) / 255.0, psf)
        image = np.clip(np.rint(blurred * 255.0), 0, 255).astype(np.uint8)
    grid = TileGrid(
        Box(0, 0, 2 * tile, 2 * tile),
        tile_px=tile,
        halo_px=model.halo_px,
        region_px=tile,
        scale=model.scale,
    )
    out_box = grid.output_box(grid.area)
    store = tmp_path / "o.zarr"
    omezarr.create_store(store, out_box.width, out_box.height, chunk_px=512)
    for index in range(len(grid.regions)):
        pipeline.restore_region(ArrayReader(image), pipeline.UniformPlan(model), grid, index, store)
    xs, ys = boundary_lines(grid)
    tiled = boundary_ratio(omezarr.read_box(store, out_box), xs, ys, model.scale)
    whole = boundary_ratio(whole_pass(model, image), xs, ys, model.scale)
    assert tiled <= whole * 1.05, (tiled, whole)


def test_deblur_motion_told_its_psf_beats_its_own_estimate_beside_glass() -> None:
    """The known-PSF graph: where part of a tile is unblurred glass, the estimate fails."""
    from skimage.metrics import structural_similarity

    from tests.scan_simulation import motion_blur, tissue_canvas

    installed = discover([ZOO_DIR])["deblur-motion"]
    assert installed.manifest.psf_graph is not None
    installed.verify()  # both graphs match the manifest's sha256
    sharp = tissue_canvas(512, 512)
    blurred = motion_blur(sharp, 9, "x")
    blurred[:, :24] = blurred[:16] = 255  # glass along two edges, as at a mosaic corner
    batch = blurred[None].transpose(0, 3, 1, 2).astype(np.float32) / 255
    scores = {}
    for name, psf in (("estimated", None), ("told", (9.0, 1.0))):
        model = load_model(installed, ["CPUExecutionProvider"], psf=psf)
        restored = (model(batch)[0].transpose(1, 2, 0) * 255).clip(0, 255)
        inner = (slice(56, -40), slice(64, -40))
        scores[name] = structural_similarity(
            restored[inner], sharp[inner].astype(np.float32), channel_axis=2, data_range=255
        )
    print(scores)
    assert scores["told"] > scores["estimated"] + 0.05, scores
