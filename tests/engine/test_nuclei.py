"""The nuclei counter on constructed H&E-like images, and counting across tile boundaries."""

import numpy as np

from workers.engine import nuclei
from workers.engine.geometry import Box
from workers.hooks.nuclei_count import NucleiCount

PINK, PURPLE = (225, 140, 195), (95, 60, 150)  # eosin-stained stroma, haematoxylin


def he_image(
    height: int, width: int, centres: list[tuple[float, float]], radius: float = 11.0
) -> np.ndarray:
    """Pink stroma with dark purple round nuclei at ``centres`` (x, y), a little noise."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = PINK
    for x, y in centres:
        inside = (cols - x) ** 2 + (rows - y) ** 2 <= radius**2
        image[inside] = PURPLE
    image += np.random.default_rng(0).normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def grid_centres(height: int, width: int, step: int) -> list[tuple[float, float]]:
    return [(x, y) for y in range(step // 2, height, step) for x in range(step // 2, width, step)]


def test_separate_nuclei_are_each_found_once_where_they_are() -> None:
    centres = grid_centres(256, 384, 48)
    found = nuclei.detect(he_image(256, 384, centres), mpp=0.25)
    assert found.count == len(centres)
    assert nuclei.match(found.centroids, np.array(centres), 3.0) == len(centres)


def test_touching_nuclei_are_split() -> None:
    pairs = [(60.0 + 80 * k, 60.0) for k in range(4)] + [(80.0 + 80 * k, 60.0) for k in range(4)]
    found = nuclei.detect(he_image(128, 400, pairs), mpp=0.25)  # each pair overlaps by 2 px
    assert found.count == 8


def test_an_empty_or_flat_image_has_no_nuclei() -> None:
    assert nuclei.detect(he_image(128, 128, []), mpp=0.25).count == 0
    assert nuclei.detect(np.full((64, 64, 3), 240, np.uint8), mpp=0.25).count == 0


def test_a_nucleus_on_a_tile_boundary_is_counted_once_by_abutting_tiles() -> None:
    on_edges = [(256.0, 100.0), (256.0, 256.0), (100.0, 256.0), (400.0, 256.0), (255.0, 400.0)]
    inside = [(120.0, 120.0), (380.0, 130.0), (130.0, 380.0), (390.0, 390.0)]
    image = he_image(512, 512, on_edges + inside)
    hook, margin = NucleiCount(), 40
    calibration = hook.calibrate([image], 0.25)
    padded = np.pad(image, ((margin, margin), (margin, margin), (0, 0)), "symmetric")
    total = 0
    for y in (0, 256):
        for x in (0, 256):
            crop = padded[y : y + 256 + 2 * margin, x : x + 256 + 2 * margin]
            core = Box(margin, margin, 256, 256)
            total += hook.measure(crop, core, 0.25, calibration)["count"]
    assert total == len(on_edges) + len(inside)


def test_dab_brown_nuclei_count_as_positive() -> None:
    image = he_image(128, 256, [(64.0, 64.0), (192.0, 64.0)])
    rows, cols = np.mgrid[0:128, 0:256]
    image[(cols - 192) ** 2 + (rows - 64) ** 2 <= 121] = (120, 75, 35)  # DAB brown
    hook = NucleiCount()
    result = hook.measure(image, Box(0, 0, 256, 128), 0.25, hook.calibrate([image], 0.25))
    assert result["count"] == 2 and result["dab_positive"] == 1


def test_fluorescence_nuclei_of_unknown_size_are_measured_then_counted() -> None:
    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[0:600, 0:800]
    image = rng.normal(6, 2, (600, 800, 3))
    centres = [(x, y) for y in (120, 300, 480) for x in (130, 330, 530, 700)]
    for x, y in centres:  # dim Hoechst-like nuclei 90 px across, textured
        inside = (cols - x) ** 2 + (rows - y) ** 2 <= 45**2
        image[inside, 2] = 40 + rng.normal(0, 6, inside.sum())
    image = np.clip(image, 0, 255).astype(np.uint8)
    hook = NucleiCount()
    calibration = hook.calibrate([image], None)
    assert calibration["fluorescence"] and 30 < calibration["radius_um"] * 4 < 60  # px
    result = hook.measure(image, Box(0, 0, 800, 600), None, calibration)
    assert result["count"] == len(centres)
