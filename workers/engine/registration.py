"""Register overlapping frames of a scan and solve every frame's position at once.

Each neighbour pair is measured on the overlap its nominal offset predicts: band-passed,
windowed cross-correlation (``skimage.registration.phase_cross_correlation``) to a twentieth
of a pixel, repeated on the overlap each estimate predicts until the whole-pixel offset
settles. Both frames carry the same motion blur along the scan axis, so the blur cancels out
of the correlation. The pair offsets then go into one sparse weighted least-squares solve with
frame 0 anchored at its nominal position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph
from scipy.sparse import linalg as sparse_linalg
from skimage import registration

from workers.engine.scan_layout import ScanLayout

UPSAMPLE_FACTOR = 20
MAX_PASSES = 3
BAND_PASS_SIGMAS_PX = (1.0, 8.0)
MIN_OVERLAP_PX = 16  # along both axes
MIN_STD = 0.01  # grey-level standard deviation (0..1) below which an overlap counts as flat
MIN_PEAK = 0.5  # normalised cross-correlation of the aligned overlaps
FALLBACK_WEIGHT = 1e-3  # of a nominal offset standing in for a missing or unreliable one
MIN_WEIGHT = 0.05

_phase_correlation: Callable[..., Any] = registration.phase_cross_correlation


@dataclass(frozen=True)
class PairShift:
    """Measured offset of frame ``second`` relative to frame ``first``, in pixels."""

    first: int
    second: int
    dx: float
    dy: float
    peak: float
    reliable: bool


def measure_pair(
    first: np.ndarray,
    second: np.ndarray,
    nominal: tuple[float, float],
    max_correction_px: float,
    pair: tuple[int, int] = (0, 1),
) -> PairShift:
    """Offset (x, y) of ``second`` relative to ``first``, starting from the ``nominal`` one.

    Args:
        first: frame (rows, cols[, channels]).
        second: frame of the same shape.
        nominal: expected (dx, dy) of ``second`` minus ``first``.
        max_correction_px: largest believable distance from ``nominal``.
        pair: the frames' indices, copied into the result.

    Returns:
        The offset; not ``reliable`` (and ``nominal`` when unmeasurable) when the overlap is
        too small or flat, correlates poorly, or lies more than ``max_correction_px`` away.

    """
    a, b = _grey(first), _grey(second)
    offset = (round(nominal[0]), round(nominal[1]))
    for _ in range(MAX_PASSES):  # each pass correlates the overlap the last one predicts
        correction = _correction(a, b, offset)
        if correction is None:
            return PairShift(*pair, float(nominal[0]), float(nominal[1]), 0.0, False)
        measured = (offset[0] + correction[0], offset[1] + correction[1])
        offset, previous = (round(measured[0]), round(measured[1])), offset
        if offset == previous:
            break
    peak = _aligned_correlation(a, b, offset)
    distance = float(np.hypot(measured[0] - nominal[0], measured[1] - nominal[1]))
    reliable = peak >= MIN_PEAK and distance <= max_correction_px
    return PairShift(*pair, measured[0], measured[1], peak, reliable)


def _grey(pixels: np.ndarray) -> np.ndarray:
    """Channel mean of (rows, cols[, channels]) uint8 pixels as float64 in [0, 1]."""
    values = pixels.astype(np.float64) / 255.0
    return values.mean(axis=2) if values.ndim == 3 else values


def _overlap(a: np.ndarray, b: np.ndarray, offset: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """The parts of ``a`` and ``b`` that show the same place when ``b`` lies at ``offset``."""
    (rows, cols), (dx, dy) = a.shape, offset
    x0, x1 = max(0, dx), min(cols, dx + b.shape[1])
    y0, y1 = max(0, dy), min(rows, dy + b.shape[0])
    if x1 - x0 < MIN_OVERLAP_PX or y1 - y0 < MIN_OVERLAP_PX:
        return ()
    return a[y0:y1, x0:x1], b[y0 - dy : y1 - dy, x0 - dx : x1 - dx]


def _correction(
    a: np.ndarray, b: np.ndarray, offset: tuple[int, int]
) -> tuple[float, float] | None:
    """Sub-pixel (x, y) to add to ``offset``; None when the overlap is too small or flat."""
    crops = _overlap(a, b, offset)
    if not crops or min(float(c.std()) for c in crops) < MIN_STD:
        return None
    window = np.outer(np.hanning(crops[0].shape[0]), np.hanning(crops[0].shape[1]))
    ref, moving = (_band_pass(c) * window for c in crops)
    shift, _, _ = _phase_correlation(
        ref, moving, upsample_factor=UPSAMPLE_FACTOR, normalization=None
    )
    return float(shift[1]), float(shift[0])


def _band_pass(grey: np.ndarray) -> np.ndarray:
    """Difference of Gaussians: drops pixel noise and the slow shading that biases the peak."""
    fine, coarse = (ndimage.gaussian_filter(grey, sigma) for sigma in BAND_PASS_SIGMAS_PX)
    band: np.ndarray = fine - coarse
    return band


def _aligned_correlation(a: np.ndarray, b: np.ndarray, offset: tuple[int, int]) -> float:
    """Pearson correlation of the overlaps at ``offset``, clipped to [0, 1]."""
    crops = _overlap(a, b, offset)
    if not crops:
        return 0.0
    ref, moving = (c - c.mean() for c in crops)
    norm = float(np.sqrt((ref * ref).sum() * (moving * moving).sum()))
    return float(np.clip((ref * moving).sum() / norm, 0.0, 1.0)) if norm > 0 else 0.0


def solve_positions(
    count: int, pairs: list[PairShift], nominal: np.ndarray
) -> tuple[np.ndarray, list[float]]:
    """Positions (count, 2) that best agree with the pair offsets, and each pair's residual.

    Reliable pairs weigh by their peak; unreliable ones, and a link from every part of the
    graph that nothing else ties to frame 0, hold their nominal offset with a small weight.
    Frame 0 stays at its nominal position. Residuals are |measured - solved offset| in pixels.
    """
    nominal = np.asarray(nominal, dtype=np.float64)
    if count <= 1:
        return nominal[:count].copy(), [0.0] * len(pairs)
    edges = [_constraint(p, nominal) for p in pairs]
    edges += _connecting_links(count, pairs, nominal)
    positions = _least_squares(count, edges, nominal[0])
    residuals = [
        float(np.hypot(*(np.array([p.dx, p.dy]) - positions[p.second] + positions[p.first])))
        for p in pairs
    ]
    return positions, residuals


_Edge = tuple[int, int, float, float, float]  # first, second, dx, dy, weight


def _constraint(pair: PairShift, nominal: np.ndarray) -> _Edge:
    """A pair as a weighted offset: measured when reliable, else nominal and weak."""
    if pair.reliable:
        weight = float(np.clip(pair.peak, MIN_WEIGHT, 1.0))
        return pair.first, pair.second, pair.dx, pair.dy, weight
    dx, dy = nominal[pair.second] - nominal[pair.first]
    return pair.first, pair.second, float(dx), float(dy), FALLBACK_WEIGHT


def _connecting_links(count: int, pairs: list[PairShift], nominal: np.ndarray) -> list[_Edge]:
    """Weak nominal links that tie every part of the pair graph to frame 0.

    Each part without frame 0 gets a link from its first frame to the one acquired before.
    """
    firsts = [p.first for p in pairs]
    seconds = [p.second for p in pairs]
    graph = sparse.coo_matrix((np.ones(len(pairs)), (firsts, seconds)), shape=(count, count))
    _, labels = csgraph.connected_components(graph, directed=False)
    links: list[_Edge] = []
    for label in np.unique(labels):
        start = int(np.flatnonzero(labels == label)[0])
        if start > 0:
            dx, dy = nominal[start] - nominal[start - 1]
            links.append((start - 1, start, float(dx), float(dy), FALLBACK_WEIGHT))
    return links


def _least_squares(count: int, edges: list[_Edge], anchor: np.ndarray) -> np.ndarray:
    """Solve p[j] - p[i] = d for every edge (weighted) with p[0] fixed at ``anchor``."""
    first, second = (np.array([e[k] for e in edges], dtype=np.int64) for k in (0, 1))
    offsets = np.array([(e[2], e[3]) for e in edges], dtype=np.float64)
    weights = np.sqrt(np.array([e[4] for e in edges], dtype=np.float64))
    rows = np.arange(len(edges))
    design = sparse.coo_matrix(
        (np.concatenate([-weights, weights]), (np.tile(rows, 2), np.concatenate([first, second]))),
        shape=(len(edges), count),
    ).tocsc()
    target = offsets * weights[:, None] - design[:, [0]].toarray() * anchor
    free = design[:, 1:]
    normal = (free.T @ free).tocsc()
    solved = sparse_linalg.splu(normal).solve(np.asarray(free.T @ target))
    return np.vstack([anchor[None, :], solved])


def register_scan(
    frame: Callable[[int], np.ndarray], layout: ScanLayout, max_correction_px: float = 16.0
) -> tuple[np.ndarray, list[PairShift], list[float]]:
    """Measure every neighbour pair of ``layout`` and solve the frames' positions.

    Returns:
        Positions (count, 2), the measured pairs and each pair's residual in pixels.

    """
    nominal = layout.nominal_positions()
    load = lru_cache(maxsize=2 * layout.frames_per_row + 2)(frame)
    shifts = [
        measure_pair(load(i), load(j), _offset(nominal, i, j), max_correction_px, (i, j))
        for i, j in layout.neighbour_pairs()
    ]
    positions, residuals = solve_positions(layout.count, shifts, nominal)
    return positions, shifts, residuals


def _offset(positions: np.ndarray, first: int, second: int) -> tuple[float, float]:
    """(dx, dy) of frame ``second`` minus frame ``first``."""
    dx, dy = positions[second] - positions[first]
    return float(dx), float(dy)
