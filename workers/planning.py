"""Turn a job request into the exact parameters every task of the job recomputes its grid from."""

from __future__ import annotations

import math
from typing import Any

from models.manifest import ModelManifest
from workers.engine.blurmap import CellGrid
from workers.engine.geometry import Box
from workers.engine.omezarr import owned_levels, pyramid_sizes
from workers.engine.routing import AUTO_ROUTES
from workers.engine.tiling import TileGrid
from workers.errors import InvalidInput
from workers.settings import Settings

MIN_TILE_PX, MAX_TILE_PX = 32, 4096
AUTO = "auto"
CLASSIFIER = "blur-classifier"


def requested_models(model: str | list[str]) -> list[str]:
    """The models a request may run: a chain as given, or every model ``auto`` routes to."""
    if model == AUTO:
        return sorted({name for route in AUTO_ROUTES.values() for name in route})
    chain = [model] if isinstance(model, str) else list(model)
    if not chain:
        raise InvalidInput("model must name a model, a non-empty list of models, or 'auto'")
    if AUTO in chain and len(chain) > 1:
        raise InvalidInput("'auto' cannot be part of a chain")
    return chain


def _scale(chain: list[ModelManifest]) -> int:
    if any(m.scale != 1 for m in chain[:-1]):
        raise InvalidInput("only the last model of a chain may change the image size")
    return chain[-1].scale


def _region_px(target_px: int, tile_px: int, scale: int, chunk_px: int) -> int:
    """Input pixels per side of a region: whole tiles, about ``target_px`` output pixels.

    The region's output side is a multiple of the chunk, so regions never share a chunk.
    """
    tiles = max(1, target_px // (tile_px * scale))
    step = chunk_px // math.gcd(chunk_px, scale)
    return -(-tile_px * tiles // step) * step


def plan_params(
    slide_size: tuple[int, int],
    manifests: list[ModelManifest],
    settings: Settings,
    region: tuple[int, int, int, int] | None = None,
    tile_px: int | None = None,
    overlap_px: int | None = None,
    skip_background: bool = True,
    auto: bool = False,
    classify: bool = False,
    min_confidence: float = 0.6,
) -> dict[str, Any]:
    """Validate a request against the slide and models; return the job's stored parameters.

    ``manifests`` is the chain a job runs on every tissue tile, or with ``auto`` every
    model routing may pick; ``classify`` adds the blur map (needed by ``auto``).
    """
    width, height = slide_size
    area = Box(*region) if region else Box(0, 0, width, height)
    if area.width <= 0 or area.height <= 0:
        raise InvalidInput("region must have a positive width and height")
    if area.x < 0 or area.y < 0 or area.right > width or area.bottom > height:
        raise InvalidInput(
            f"region {list(region or ())} lies outside the slide ({width} x {height})"
        )
    tile = tile_px or min(m.tile_px for m in manifests)
    if not MIN_TILE_PX <= tile <= MAX_TILE_PX:
        raise InvalidInput(f"tile_px must be between {MIN_TILE_PX} and {MAX_TILE_PX}")
    if overlap_px:
        raise InvalidInput(
            "overlap_px is no longer used: tiles abut and each model sees its halo_px of "
            "context (its receptive field) around every tile, so leave overlap_px out or 0"
        )
    if not 0.0 <= min_confidence <= 1.0:
        raise InvalidInput("min_confidence must be between 0 and 1")
    chunk = settings.chunk_px
    cell_px = 1 << (min(settings.blur_cell_px, tile).bit_length() - 1)
    scale = 1 if auto else _scale(manifests)
    region_px = _region_px(settings.region_px, tile, scale, chunk)
    levels = len(pyramid_sizes(area.width * scale, area.height * scale))
    return {
        "area": [area.x, area.y, area.width, area.height],
        "tile_px": tile,
        "halo_px": max(m.halo_px for m in manifests),
        "region_px": region_px,
        "scale": scale,
        "region_levels": owned_levels(region_px * scale, chunk, levels),
        "skip_background": skip_background,
        "chunk_px": chunk,
        "auto": auto,
        "models": [m.name for m in manifests],
        "classify": classify or auto,
        "min_confidence": min_confidence,
        "cell_px": cell_px,
        "block_cells": max(region_px // cell_px, 1),
    }


HARMS_FLUORESCENCE = {"deblur-defocus": "it lowers the quality of fluorescence images"}


def fluorescence_channels(
    info: dict[str, Any], manifests: list[ModelManifest], auto: bool
) -> list[dict[str, str]] | None:
    """A multi-channel slide's channels (name, colour), after checking the models suit them.

    Each channel is restored on its own, so only 1-channel models apply; ``auto`` routes to
    RGB deblurring models and is refused, as is a model known to harm fluorescence.
    """
    channels = info.get("channels") or []
    if not channels:
        return None
    names = ", ".join(c["name"] for c in channels)
    if auto:
        raise InvalidInput(
            f"this slide has {len(channels)} fluorescence channels ({names}); 'auto' routes to "
            "RGB deblurring models: name a 1-channel model such as sr-x2"
        )
    for manifest in manifests:
        if manifest.name in HARMS_FLUORESCENCE:
            raise InvalidInput(
                f"{manifest.name} is not run on fluorescence channels ({names}): "
                f"{HARMS_FLUORESCENCE[manifest.name]}"
            )
        if manifest.in_channels != 1:
            raise InvalidInput(
                f"{manifest.name} restores RGB images; this slide has {len(channels)} "
                f"fluorescence channels ({names}), each restored on its own by a 1-channel "
                "model such as sr-x2"
            )
    return [{"name": c["name"], "color": c["color"]} for c in channels]


def grid_from_params(params: dict[str, Any]) -> TileGrid:
    """The job's tile grid, identical in every task."""
    return TileGrid(
        area=Box(*params["area"]),
        tile_px=params["tile_px"],
        halo_px=params["halo_px"],
        region_px=params["region_px"],
        scale=params["scale"],
    )


def cells_from_params(params: dict[str, Any]) -> CellGrid:
    """The job's blur-map cells, identical in every task."""
    return CellGrid(Box(*params["area"]), params["cell_px"], params["block_cells"])
