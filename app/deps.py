"""Per-application services handed to routes (built once in the lifespan)."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from fastapi import Request

from workers.sandbox import Sandbox
from workers.settings import Settings
from workers.store import Store


@dataclass
class Services:
    """What the routes need."""

    settings: Settings
    store: Store
    celery: Celery
    sandbox: Sandbox

    @property
    def reader_limits(self) -> tuple[int, int, float]:
        """(max slide pixels, max plain image pixels, max pixels per byte) for the sandbox."""
        settings = self.settings
        return (
            settings.max_slide_pixels,
            settings.max_plain_image_pixels,
            settings.max_pixels_per_byte,
        )


def services(request: Request) -> Services:
    """The application's services."""
    return request.app.state.services  # type: ignore[no-any-return]
