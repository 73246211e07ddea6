"""Small PNG charts drawn with Pillow (no plotting library on the server): bars and a map."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

INK, GRID, PAPER = (40, 40, 40), (215, 215, 215), (255, 255, 255)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def bar_chart(
    title: str,
    labels: list[str],
    series: dict[str, list[float]],
    colours: dict[str, tuple[int, int, int]],
    percent: bool = False,
    size: tuple[int, int] = (520, 260),
    label_colours: list[tuple[int, int, int]] | None = None,
) -> bytes:
    """Grouped vertical bars: one group per label, one bar per series, values written above.

    ``label_colours`` colours a single series' bars by label instead.
    """
    width, height = size
    image = Image.new("RGB", size, PAPER)
    draw = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(15), ImageFont.load_default(12)
    draw.text((10, 6), title, fill=INK, font=font)
    top, bottom, left, right = 48, height - 34, 16, width - 16
    peak = max((v for values in series.values() for v in values), default=1.0) or 1.0
    draw.line((left, bottom, right, bottom), fill=INK)
    group = (right - left) / max(len(labels), 1)
    bar = group * 0.7 / max(len(series), 1)
    for i, label in enumerate(labels):
        x0 = left + i * group + group * 0.15
        for j, (name, values) in enumerate(series.items()):
            value = values[i]
            bar_top = bottom - (bottom - top) * value / peak
            box = (x0 + j * bar, bar_top, x0 + (j + 1) * bar - 3, bottom)
            fill = label_colours[i] if label_colours else colours[name]
            draw.rectangle(box, fill=fill)
            text = f"{value:.0%}" if percent else f"{value:.3g}"
            draw.text((box[0], bar_top - 15), text, fill=INK, font=small)
        draw.text((x0, bottom + 6), label, fill=INK, font=small)
    if len(series) > 1:
        x = width - 16
        for name in reversed(list(series)):
            x -= int(draw.textlength(name, font=small)) + 26
            draw.rectangle((x, 10, x + 12, 22), fill=colours[name])
            draw.text((x + 16, 9), name, fill=INK, font=small)
    return _png(image)


def overlay_map(thumbnail: np.ndarray, cells_rgba: np.ndarray, title: str) -> bytes:
    """A thumbnail (rows, cols, 3) with an RGBA cell map stretched over it, and a title."""
    base = Image.fromarray(thumbnail).convert("RGBA")
    layer = Image.fromarray(cells_rgba, mode="RGBA").resize(base.size, Image.Resampling.NEAREST)
    composed = Image.alpha_composite(base, layer).convert("RGB")
    canvas = Image.new("RGB", (composed.width, composed.height + 28), PAPER)
    canvas.paste(composed, (0, 28))
    ImageDraw.Draw(canvas).text((6, 6), title, fill=INK, font=ImageFont.load_default(15))
    return _png(canvas)
