"""Deep Zoom responses for any reader: the descriptor and one JPEG tile."""

from __future__ import annotations

from fastapi.responses import Response

from workers.engine import dzi
from workers.engine.readers import SlideReader

TILE_CACHE = {"Cache-Control": "max-age=3600"}


def descriptor(reader: SlideReader) -> Response:
    """The ``.dzi`` XML of a reader's level-0 image."""
    xml = dzi.DeepZoom(reader.info.width, reader.info.height).xml()
    return Response(xml, media_type="application/xml")


def tile(reader: SlideReader, level: int, col: int, row: int) -> Response:
    """One Deep Zoom tile of a reader as JPEG."""
    zoom = dzi.DeepZoom(reader.info.width, reader.info.height)
    jpeg = dzi.encode(dzi.render_tile(reader, zoom, level, col, row))
    return Response(jpeg, media_type="image/jpeg", headers=TILE_CACHE)
