"""Downstream analyses run on every job's input and output tiles: plugins by entry point.

A hook is found through the Python entry-point group ``slide_restore.hooks``; the entry
point names a class (or factory) that takes no arguments and returns an object with:

- ``name``, ``version`` and ``result_schema`` (a JSON Schema of its slide result);
- optionally ``calibrate(samples, mpp)``: a JSON-serialisable dict computed once per job
  from a few full-resolution tissue samples of the input (e.g. a slide-wide threshold);
- ``measure(pixels, core, mpp, calibration)``: a JSON-serialisable dict for one tile,
  given the tile's pixels with a margin of context (RGB uint8), the tile's core within
  them (a :class:`~workers.engine.geometry.Box`), microns per pixel (or None) and the
  job's calibration (empty without ``calibrate``); it should count only what lies in the
  core, and decide alike from every tile that sees an object, so that abutting tiles
  count everything once;
- ``reduce(before, after, area_um2)``: the slide result from every tile's measure on the
  input and on the output, and the tissue area measured;
- ``tile_columns(before, after)``: the columns it adds to the job's tile table.

Workers run hooks per tile (so they scale with the workers); a hook that raises fails its
own result and never the restoration.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Protocol

import numpy as np

from workers.engine.geometry import Box
from workers.errors import InvalidInput

GROUP = "slide_restore.hooks"


class Hook(Protocol):
    """What a downstream analysis provides (see the module docstring)."""

    name: str
    version: str
    result_schema: dict[str, Any]

    def measure(
        self, pixels: np.ndarray, core: Box, mpp: float | None, calibration: dict[str, Any]
    ) -> dict[str, Any]:
        """One tile's measure; only what lies in ``core`` counts."""
        ...

    def reduce(
        self, before: list[dict[str, Any]], after: list[dict[str, Any]], area_um2: float | None
    ) -> dict[str, Any]:
        """The slide's result from every tile's measures."""
        ...

    def tile_columns(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """The tile table's columns for one tile."""
        ...


def installed() -> dict[str, Any]:
    """Every installed hook's entry point, by name."""
    return {point.name: point for point in entry_points(group=GROUP)}


def load(name: str) -> Hook:
    """A hook by name, ready to run."""
    points = installed()
    if name not in points:
        names = ", ".join(sorted(points)) or "none"
        raise InvalidInput(f"hook {name!r} is not installed (installed: {names})")
    hook: Hook = points[name].load()()
    return hook


def calibrate(hook: Hook, samples: list[np.ndarray], mpp: float | None) -> dict[str, Any]:
    """The hook's calibration for one job (empty when it has none)."""
    method = getattr(hook, "calibrate", None)
    return dict(method(samples, mpp)) if method is not None else {}


def describe() -> list[dict[str, Any]]:
    """Name, version and result schema of every installed hook."""
    hooks = [load(name) for name in sorted(installed())]
    return [{"name": h.name, "version": h.version, "result_schema": h.result_schema} for h in hooks]
