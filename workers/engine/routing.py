"""Decide each cell's blur class and each tile's restoration from the classified cells.

A cell's class comes from the blur classifier, checked against the cell's sharpness
(Tenengrad) relative to the tissue of the same slide, because stain, section thickness
and magnification vary between slides and an absolute threshold would not hold:

- the reference is the median sharpness of the cells the classifier calls in focus;
- if the cells it calls blurred are not clearly softer (the reference below
  ``separation`` times their median), the split is not borne out by the pixels: the
  larger side (by summed confidence) holds for the whole slide, so a uniformly blurred
  slide with some cells missed, or a sharp one with some false alarms, is called as a whole;
- otherwise a cell called blurred but as sharp as the reference (ratio >= ``veto_ratio``)
  is in focus, and a cell called in focus but far softer (ratio < ``rescue_ratio``) is
  blurred, of the blur class the classifier ranks highest;
- with fewer than ``min_reference_cells`` cells called in focus, the classifier decides;
- blur decided with less than ``min_confidence`` (the job's; 0.6 by default) is left alone
  and counted as in focus.

A tile is restored when the confident blurred cells under its core cover at least
``min_blurred_share`` of it; its route is the class with the most weight (area times
confidence) among them, or mixed when defocus and motion both weigh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from workers.engine.blurmap import (
    BACKGROUND,
    DEFOCUS,
    IN_FOCUS,
    MIXED,
    MOTION,
    BlurMap,
    CellGrid,
)
from workers.engine.classification import EXTENT, FEATURES, PROBABILITIES
from workers.engine.geometry import Box
from workers.engine.motion_psf import tile_psf
from workers.engine.pipeline import Restorer
from workers.engine.tiling import Tile

AUTO_ROUTES: dict[int, tuple[str, ...]] = {
    DEFOCUS: ("deblur-defocus",),
    MOTION: ("deblur-motion",),
    MIXED: ("deblur-motion", "deblur-defocus"),
}
_TENENGRAD = FEATURES.index("tenengrad")


@dataclass(frozen=True)
class RoutingRules:
    """Thresholds of the decision (defaults measured on real and synthesised blur)."""

    veto_ratio: float = 0.8
    rescue_ratio: float = 0.35
    separation: float = 1.25
    min_reference_cells: int = 8
    min_confidence: float = 0.6
    min_blurred_share: float = 0.125
    mixed_share: float = 0.3


@dataclass(frozen=True)
class TileDecision:
    """What routing found under a tile's core and which models run on it (none: copied).

    ``psf`` (length px, 1.0 along x): the motion PSF handed to ``deblur-motion``, if known.
    """

    blur_class: int
    confidence: float
    extent_px: float
    route: tuple[str, ...]
    psf: tuple[float, float] | None = None

    @property
    def restorer_key(self) -> tuple[tuple[str, ...], tuple[float, float] | None]:
        """What identifies the tile's restorer: its route and the PSF it is told."""
        return self.route, self.psf


def decide_cells(features: np.ndarray, rules: RoutingRules) -> BlurMap:
    """Each cell's class, confidence and extent from the features of the whole area."""
    probabilities = np.nan_to_num(features[..., PROBABILITIES], nan=0.0)
    tissue = ~np.isnan(features[..., 0])
    p_focus = probabilities[..., 0]
    blur_kind = 1 + np.argmax(probabilities[..., 1:], axis=-1)  # 1 defocus, 2 motion, 3 mixed
    tenengrad = np.nan_to_num(features[..., _TENENGRAD], nan=0.0)
    called_blurred = tissue & (p_focus < 0.5)
    called_sharp = tissue & ~called_blurred
    blurred = called_blurred.copy()
    confidence = np.where(blurred, 1.0 - p_focus, p_focus)
    if called_sharp.sum() >= rules.min_reference_cells:
        reference = max(float(np.median(tenengrad[called_sharp])), 1e-9)
        soft = float(np.median(tenengrad[called_blurred])) if called_blurred.any() else 0.0
        inseparable = (
            called_blurred.sum() >= rules.min_reference_cells
            and reference < rules.separation * soft
        )
        if inseparable:  # the classifier's split is not borne out: the larger side holds
            votes_blurred = float((1.0 - p_focus)[called_blurred].sum())
            votes_sharp = float(p_focus[called_sharp].sum())
            blurred = tissue & (votes_blurred > votes_sharp)
            confidence = np.full(
                p_focus.shape, max(votes_blurred, votes_sharp) / (votes_blurred + votes_sharp)
            )
        else:
            ratio = tenengrad / reference
            vetoed = called_blurred & (ratio >= rules.veto_ratio)
            rescued = called_sharp & (ratio < rules.rescue_ratio)
            blurred = (called_blurred & ~vetoed) | rescued
            confidence = np.where(vetoed, np.minimum(ratio, 1.0), confidence)
            confidence = np.where(rescued, 1.0 - ratio / rules.rescue_ratio / 2, confidence)
    unsure = blurred & (confidence < rules.min_confidence)  # left alone: counted in focus
    confidence = np.where(unsure, 1.0 - confidence, confidence)
    blurred &= ~unsure
    classes = np.where(blurred, IN_FOCUS + blur_kind, IN_FOCUS)
    classes = np.where(tissue, classes, BACKGROUND).astype(np.uint8)
    classes = smooth_blur_kinds(classes, confidence)
    extent = np.where(tissue & blurred, np.nan_to_num(features[..., EXTENT]), 0.0)
    return BlurMap(classes, np.where(tissue, confidence, 0.0).astype(np.float32), extent)


def smooth_blur_kinds(classes: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Give each blurred cell the blur kind that outweighs its own among its blurred neighbours.

    A cell at the edge of a defocused patch, half sharp, looks like directional blur to the
    classifier; its blurred neighbours (weighted by confidence, itself included) outvote it.
    Cells keep their kind on a tie.
    """
    kinds = (DEFOCUS, MOTION, MIXED)
    weights = np.stack(
        [
            ndimage.convolve(
                np.where(classes == k, confidence, 0.0), np.ones((3, 3)), mode="constant"
            )
            for k in kinds
        ]
    )
    own = np.zeros(classes.shape)
    for index, kind in enumerate(kinds):
        own = np.where(classes == kind, weights[index], own)
    best = np.asarray(kinds, dtype=np.uint8)[np.argmax(weights, axis=0)]
    outvoted = (classes > IN_FOCUS) & (weights.max(axis=0) > own)
    return np.where(outvoted, best, classes).astype(np.uint8)


def decide_tile(blur_map: BlurMap, cells: CellGrid, core: Box, rules: RoutingRules) -> TileDecision:
    """The blur found under a tile core and the auto route for it."""
    rows, cols = cells.cells_under(core)
    areas = cells.overlap_areas(core)
    classes = blur_map.classes[rows, cols]
    confidence = blur_map.confidence[rows, cols]
    blurred = (classes > IN_FOCUS) & (confidence >= rules.min_confidence)
    weights = {c: float((areas * confidence)[blurred & (classes == c)].sum()) for c in AUTO_ROUTES}
    blurred_area = float(areas[blurred].sum())
    tissue_area = float(areas[classes != BACKGROUND].sum())
    if blurred_area < rules.min_blurred_share * core.area:
        conf = float((areas * confidence)[classes == IN_FOCUS].sum() / max(tissue_area, 1.0))
        return TileDecision(IN_FOCUS if tissue_area else BACKGROUND, conf, 0.0, ())
    total = sum(weights.values())
    blur_class = max(weights, key=lambda c: weights[c])
    if min(weights[DEFOCUS], weights[MOTION]) >= rules.mixed_share * total:
        blur_class = MIXED
    extent = float(np.average(blur_map.extent[rows, cols][blurred], weights=areas[blurred]))
    conf = float((areas * confidence)[blurred].sum() / blurred_area)
    psfs = blur_map.motion_psf if blur_class == MOTION else None
    psf = tile_psf(psfs, cells, core) if psfs is not None else None
    return TileDecision(blur_class, conf, extent, AUTO_ROUTES[blur_class], psf)


class RoutedPlan:
    """The restorer of each tile from its decision; only blurred cells take its output.

    A restored tile's model sees the largest all-blurred rectangle of cells under its core,
    grown by up to a cell where the pixels are as blurred as the rectangle and trimmed of
    margins that are sharper (to the 32 px block; the rest of its read box is mirrored from
    it), because the deblurring models estimate the PSF from their whole input and sharp
    tissue beside a blurred patch spoils that estimate. Its output counts only inside that
    box, laid over the input with a weight rising linearly over ``ramp_px`` from the box's
    edge inwards; pixels no restored box reaches keep their values exactly.
    """

    def __init__(
        self,
        decisions: dict[int, TileDecision],
        restorers: dict[tuple[tuple[str, ...], tuple[float, float] | None], Restorer],
        blur_map: BlurMap,
        cells: CellGrid,
        rules: RoutingRules,
        ramp_px: int = 64,
        input_in_output: bool = False,
        grow_px: int | None = None,
    ) -> None:
        self.input_in_output = input_in_output
        self.decisions = decisions
        self.restorers = restorers
        self.cells = cells
        self.blurred = (blur_map.classes > IN_FOCUS) & (blur_map.confidence >= rules.min_confidence)
        self.overlay_ramp_px = ramp_px
        self.grow_px = cells.cell_px if grow_px is None else grow_px

    def restorer_for(self, tile: Tile) -> Restorer | None:
        """The chain routing chose for the tile (told its PSF where known), or None."""
        decision = self.decisions[tile.index]
        return self.restorers[decision.restorer_key] if decision.route else None

    def source_box(self, tile: Tile, read: Box) -> Box | None:
        """The largest rectangle of blurred cells under the core, within the read box."""
        rectangle = self._blurred_rectangle(tile.core)
        return None if rectangle is None else rectangle.intersect(read)

    def _blurred_rectangle(self, core: Box) -> Box | None:
        """Level-0 box of the all-blurred rectangle of cells covering most of ``core``."""
        rows, cols = self.cells.cells_under(core)
        blurred = self.blurred[rows, cols]
        if not blurred.any():
            return None
        best, best_area = (0, 0, 0, 0), -1.0
        n_rows, n_cols = blurred.shape
        for r0 in range(n_rows):
            for r1 in range(r0 + 1, n_rows + 1):
                for c0 in range(n_cols):
                    for c1 in range(c0 + 1, n_cols + 1):
                        if blurred[r0:r1, c0:c1].all():
                            first = self.cells.cell_box(rows.start + r0, cols.start + c0)
                            last = self.cells.cell_box(rows.start + r1 - 1, cols.start + c1 - 1)
                            box = Box(first.x, first.y, last.right - first.x, last.bottom - first.y)
                            inside = box.intersect(core)
                            area = inside.area if inside else 0
                            if area > best_area:
                                best, best_area = (box.x, box.y, box.width, box.height), area
        return Box(*best)
