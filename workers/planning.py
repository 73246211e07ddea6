"""Turn a job request into the exact parameters every task of the job recomputes its grid from."""

from __future__ import annotations

from typing import Any

from models.manifest import ModelManifest
from workers.engine.geometry import Box
from workers.engine.tiling import TileGrid
from workers.errors import InvalidInput
from workers.settings import Settings

MIN_TILE_PX, MAX_TILE_PX = 32, 4096
DEFAULT_OVERLAP_PX = 32


def plan_params(
    slide_size: tuple[int, int],
    manifest: ModelManifest,
    settings: Settings,
    region: tuple[int, int, int, int] | None = None,
    tile_px: int | None = None,
    overlap_px: int | None = None,
    skip_background: bool = True,
) -> dict[str, Any]:
    """Validate a request against the slide and model; return the job's stored parameters."""
    width, height = slide_size
    area = Box(*region) if region else Box(0, 0, width, height)
    if area.width <= 0 or area.height <= 0:
        raise InvalidInput("region must have a positive width and height")
    if area.x < 0 or area.y < 0 or area.right > width or area.bottom > height:
        raise InvalidInput(
            f"region {list(region or ())} lies outside the slide ({width} x {height})"
        )
    tile = tile_px or manifest.tile_px
    if not MIN_TILE_PX <= tile <= MAX_TILE_PX:
        raise InvalidInput(f"tile_px must be between {MIN_TILE_PX} and {MAX_TILE_PX}")
    overlap = DEFAULT_OVERLAP_PX if overlap_px is None else overlap_px
    if not 0 <= overlap <= tile // 2:
        raise InvalidInput("overlap_px must be between 0 and half of tile_px")
    chunk = settings.chunk_px
    region_px = max(settings.region_px, -(-tile // chunk) * chunk)
    return {
        "area": [area.x, area.y, area.width, area.height],
        "tile_px": tile,
        "overlap_px": overlap,
        "halo_px": manifest.halo_px,
        "region_px": region_px,
        "scale": manifest.scale,
        "skip_background": skip_background,
        "chunk_px": chunk,
    }


def grid_from_params(params: dict[str, Any]) -> TileGrid:
    """The job's tile grid, identical in every task."""
    return TileGrid(
        area=Box(*params["area"]),
        tile_px=params["tile_px"],
        overlap_px=params["overlap_px"],
        halo_px=params["halo_px"],
        region_px=params["region_px"],
        scale=params["scale"],
    )
