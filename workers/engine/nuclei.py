"""Nuclei detection: haematoxylin (or a nuclear stain) by colour deconvolution, seeds, watershed.

Brightfield H&E and IHC: scikit-image's colour deconvolution (Ruifrok and Johnston) gives
the haematoxylin density; fluorescence: the brightest channel is taken as the nuclear
stain. The nuclear signal is smoothed, thresholded by Otsu, touching nuclei are split by a
watershed of the distance transform from one seed per local maximum, and objects far
smaller than a nucleus are dropped. Sizes are in microns, so the same settings hold at 20x
and 40x. For IHC, a nucleus is DAB-positive when the mean DAB density over it exceeds
``DAB_POSITIVE``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import color, feature, filters, measure, segmentation

NUCLEUS_RADIUS_UM = 2.5  # seeds lie at least 0.8 of this apart (a nucleus is 5-8 um across)
MIN_AREA_UM2 = 6.0  # smaller objects are debris or noise
SMOOTH_UM = 0.5
MIN_OPTICAL_DENSITY = 0.04  # nuclei are above (Otsu on gbm40: 0.08-0.15); stroma about 0.01
MIN_FLUORESCENCE = 0.03  # of the brightest channel, in [0, 1] (dim widefield nuclei: 0.1-0.2)
DAB_POSITIVE = 0.15  # mean DAB optical density over a nucleus
DEFAULT_MPP = 0.25  # microns per pixel assumed when a slide does not say (40x)


@dataclass(frozen=True)
class Nuclei:
    """Nuclei found in an image: centroids (x, y) in pixels, areas in pixels, DAB flags."""

    centroids: np.ndarray  # (n, 2) float, x then y
    areas: np.ndarray  # (n,) int
    dab_positive: np.ndarray  # (n,) bool

    @property
    def count(self) -> int:
        """How many nuclei."""
        return len(self.areas)


def nuclear_signal(pixels: np.ndarray, fluorescence: bool = False) -> np.ndarray:
    """Per pixel, how much nuclear stain (float, higher is more).

    Brightfield: haematoxylin plus DAB optical density, so that DAB-positive nuclei of a
    nuclear IHC stain (brown, little haematoxylin) count too; on H&E the DAB term is near 0.
    """
    if fluorescence:
        brightest: np.ndarray = pixels.max(axis=2).astype(np.float32) / 255.0
        return brightest
    hed = color.rgb2hed(pixels[..., :3])
    stain: np.ndarray = (hed[..., 0] + np.maximum(hed[..., 2], 0.0)).astype(np.float32)
    return stain


def signal_threshold(samples: list[np.ndarray], mpp: float | None, fluorescence: bool) -> float:
    """Otsu's threshold of the smoothed nuclear signal over sample images of one slide.

    Passing one slide-wide threshold to :func:`detect` makes a nucleus look the same from
    every tile that sees it, so that tiles agree on which of them owns it.
    """
    um = mpp or DEFAULT_MPP
    signal = np.concatenate(
        [
            ndimage.gaussian_filter(nuclear_signal(s, fluorescence), SMOOTH_UM / um).ravel()
            for s in samples
        ]
    )
    floor = MIN_FLUORESCENCE if fluorescence else MIN_OPTICAL_DENSITY
    if float(signal.max() - signal.min()) < 1e-3:
        return floor
    return max(float(filters.threshold_otsu(signal)), floor)


def typical_radius_um(
    samples: list[np.ndarray], threshold: float, fluorescence: bool, mpp: float | None
) -> float:
    """The median equivalent radius of the nuclear-stained objects in samples, in microns.

    For images that give no pixel size, where nuclei can be of any size in pixels.
    """
    um = mpp or DEFAULT_MPP
    radii = []
    for sample in samples:
        signal = ndimage.gaussian_filter(nuclear_signal(sample, fluorescence), SMOOTH_UM / um)
        mask = ndimage.binary_fill_holes(ndimage.binary_opening(signal > threshold))
        labels, count = ndimage.label(mask)
        areas = np.bincount(labels.ravel())[1:] if count else np.zeros(0)
        radii += list(np.sqrt(areas[areas >= MIN_AREA_UM2 / (um * um)] / np.pi) * um)
    return float(np.median(radii)) if radii else NUCLEUS_RADIUS_UM


def detect(
    pixels: np.ndarray,
    mpp: float | None = None,
    fluorescence: bool = False,
    threshold: float | None = None,
    radius_um: float = NUCLEUS_RADIUS_UM,
) -> Nuclei:
    """Nuclei of an RGB uint8 image (brightfield unless ``fluorescence``).

    ``threshold``: the nuclear signal's (from :func:`signal_threshold`); default this
    image's own Otsu threshold. ``radius_um``: seeds lie at least 0.8 of it apart.
    """
    um = mpp or DEFAULT_MPP
    if threshold is None:
        threshold = signal_threshold([pixels], mpp, fluorescence)
    signal = ndimage.gaussian_filter(nuclear_signal(pixels, fluorescence), SMOOTH_UM / um)
    if float(signal.max()) <= threshold:
        return _none()
    foreground = ndimage.binary_opening(signal > threshold, iterations=1)
    foreground = ndimage.binary_fill_holes(foreground)
    distance = ndimage.distance_transform_edt(foreground)
    radius_px = max(radius_um / um, 1.0)
    peaks = feature.peak_local_max(
        ndimage.gaussian_filter(distance, radius_px / 3),
        min_distance=max(round(radius_px * 0.8), 1),
        labels=measure.label(foreground),
        exclude_border=False,
    )
    if not len(peaks):
        return _none()
    markers = np.zeros(distance.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    regions = segmentation.watershed(-distance, markers, mask=foreground)
    props = measure.regionprops(regions)
    min_area = MIN_AREA_UM2 / (um * um)
    kept = [p for p in props if p.area >= min_area]
    if not kept:
        return _none()
    centroids = np.array([[p.centroid[1], p.centroid[0]] for p in kept], dtype=np.float64)
    areas = np.array([p.area for p in kept], dtype=np.int64)
    if fluorescence:
        positive = np.zeros(len(kept), dtype=bool)
    else:
        dab = color.rgb2hed(pixels[..., :3])[..., 2]
        positive = np.array([dab[tuple(p.coords.T)].mean() > DAB_POSITIVE for p in kept])
    return Nuclei(centroids, areas, positive)


def _none() -> Nuclei:
    return Nuclei(np.zeros((0, 2)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))


def match(found: np.ndarray, truth: np.ndarray, radius_px: float) -> int:
    """How many found points pair with a true point within ``radius_px`` (each used once).

    Greedy on distance, which for points much farther apart than the radius is the optimum.
    """
    if not len(found) or not len(truth):
        return 0
    distances = np.hypot(*(found[:, None, :] - truth[None, :, :]).transpose(2, 0, 1))
    pairs = np.argwhere(distances <= radius_px)
    order = np.argsort(distances[pairs[:, 0], pairs[:, 1]])
    used_found, used_truth, matched = set(), set(), 0
    for i, j in pairs[order]:
        if i not in used_found and j not in used_truth:
            used_found.add(i)
            used_truth.add(j)
            matched += 1
    return matched
