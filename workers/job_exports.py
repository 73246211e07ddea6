"""Exports of a finished job's output in other formats, written once on request."""

from __future__ import annotations

import time

from workers.engine.ometiff import write_ome_tiff
from workers.errors import Conflict, Gone
from workers.layout import job_paths
from workers.settings import Settings
from workers.store import Store


def export_ome_tiff(store: Store, settings: Settings, job_id: str) -> None:
    """Write the job's pyramidal OME-TIFF unless it exists (atomically: a partial, renamed)."""
    job = store.get_job(job_id)
    if job["state"] != "completed":
        raise Conflict(f"job {job_id} is {job['state']}; it exports once completed")
    if job["output_deleted_at"] is not None:
        raise Gone(f"the output of job {job_id} was deleted")
    paths = job_paths(settings, job_id)
    if paths.ome_tiff.exists():
        return
    partial = paths.ome_tiff.with_name(f"output.{time.time_ns()}.partial.tiff")
    try:
        write_ome_tiff(paths.output, partial, name=f"job {job_id}")
        partial.replace(paths.ome_tiff)
    finally:
        partial.unlink(missing_ok=True)
