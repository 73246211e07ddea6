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
    def reader_limits(self) -> tuple[int, int]:
        """(max slide pixels, max plain image pixels) for the sandbox."""
        return self.settings.max_slide_pixels, self.settings.max_plain_image_pixels


def services(request: Request) -> Services:
    """The application's services."""
    return request.app.state.services  # type: ignore[no-any-return]
