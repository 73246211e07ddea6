"""Boxes in slide coordinates: (x, y) and (width, height), like OpenSlide's ``read_region``.

Array code works in (row, col); :meth:`Box.slices` is the one place that converts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle of pixels: left, top, width, height."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        """One past the last column."""
        return self.x + self.width

    @property
    def bottom(self) -> int:
        """One past the last row."""
        return self.y + self.height

    @property
    def area(self) -> int:
        """Number of pixels."""
        return self.width * self.height

    def intersect(self, other: Box) -> Box | None:
        """The overlap of two boxes, or None when they do not touch."""
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1, y1 = min(self.right, other.right), min(self.bottom, other.bottom)
        if x1 <= x0 or y1 <= y0:
            return None
        return Box(x0, y0, x1 - x0, y1 - y0)

    def expand(self, px: int) -> Box:
        """The box grown by ``px`` on every side."""
        return Box(self.x - px, self.y - px, self.width + 2 * px, self.height + 2 * px)

    def relative_to(self, origin: Box) -> Box:
        """The same box with ``origin``'s corner as (0, 0)."""
        return Box(self.x - origin.x, self.y - origin.y, self.width, self.height)

    def scaled(self, factor: int) -> Box:
        """Every coordinate multiplied by an integer factor (input to output pixels)."""
        return Box(self.x * factor, self.y * factor, self.width * factor, self.height * factor)

    def contains_point(self, x: float, y: float) -> bool:
        """Whether (x, y) lies inside the box."""
        return self.x <= x < self.right and self.y <= y < self.bottom

    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices that index this box in an array whose (0, 0) is the origin."""
        return slice(self.y, self.bottom), slice(self.x, self.right)


def bounding_box(boxes: list[Box]) -> Box:
    """The smallest box holding every box of a non-empty list."""
    x0, y0 = min(b.x for b in boxes), min(b.y for b in boxes)
    x1, y1 = max(b.right for b in boxes), max(b.bottom for b in boxes)
    return Box(x0, y0, x1 - x0, y1 - y0)
