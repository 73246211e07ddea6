"""The Celery application, configured from settings (filesystem broker or Redis)."""

from __future__ import annotations

from celery import Celery

from workers.settings import Settings, get_settings


def broker_options(settings: Settings) -> dict[str, object]:
    """Transport options: message folders for the embedded broker, visibility for Redis."""
    if settings.broker_url.startswith("filesystem"):
        queue = settings.broker_dir.resolve() / "queue"
        processed = settings.broker_dir.resolve() / "processed"
        control = settings.broker_dir.resolve() / "control"
        for folder in (queue, processed, control):
            folder.mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "processed_folder": str(processed),
            "store_processed": False,
            "control_folder": str(control),
            "polling_interval": 0.1,
        }
    return {"visibility_timeout": settings.broker_visibility_timeout_s}


def create_celery(settings: Settings) -> Celery:
    """A Celery app whose tasks survive worker loss (late acks, requeue on lost worker)."""
    app = Celery("slide_restore", broker=settings.broker_url, include=["workers.tasks"])
    app.conf.update(
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_time_limit=settings.task_time_limit_s,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.resolved_worker_concurrency,
        worker_hijack_root_logger=False,
        task_serializer="json",
        accept_content=["json"],
    )
    return app


app = create_celery(get_settings())
