"""Deleting a slide or a frame sequence, and what becomes of the outputs made from it.

``RESTORE_INPUT_DELETION`` decides: ``outputs`` (the default) deletes the files of every job
made from it too, ``refuse`` answers 409 while any of them still has files, ``keep`` leaves
them (the viewer then shows an output alone). An input an active job reads is never deleted.
"""

from __future__ import annotations

import shutil
from typing import Literal

import sqlalchemy as sa

from workers.errors import Conflict
from workers.layout import sequence_paths, slide_paths
from workers.retention import delete_job_output
from workers.settings import Settings
from workers.store import ACTIVE_STATES, Store, jobs

InputKind = Literal["slide", "sequence"]


def jobs_made_from(store: Store, kind: InputKind, input_id: str) -> list[tuple[str, str, bool]]:
    """(job id, state, output kept) of every job on the input (as input or reference)."""
    query = sa.select(
        jobs.c.id, jobs.c.state, jobs.c.output_deleted_at, jobs.c.params, jobs.c[f"{kind}_id"]
    )
    found = []
    with store.engine.connect() as conn:
        for job_id, state, deleted_at, params, used in conn.execute(query):
            reference = kind == "slide" and params.get("reference_slide_id") == input_id
            if used == input_id or reference:
                found.append((job_id, state, deleted_at is None))
    return found


def delete_input(store: Store, settings: Settings, kind: InputKind, input_id: str) -> list[str]:
    """Delete a slide or sequence as the setting says; the ids of jobs whose files went too."""
    made = jobs_made_from(store, kind, input_id)
    active = [(job_id, state) for job_id, state, _ in made if state in ACTIVE_STATES]
    if active:
        job_id, state = active[0]
        raise Conflict(f"{kind} {input_id} is read by {state} job {job_id}: cancel it or wait")
    kept = [job_id for job_id, _, kept in made if kept]
    if kept and settings.input_deletion == "refuse":
        raise Conflict(
            f"{len(kept)} job output(s) were made from {kind} {input_id} (e.g. {kept[0]}): "
            "delete them first (DELETE /v1/jobs/{id}/output)"
        )
    removed = kept if settings.input_deletion == "outputs" else []
    for job_id in removed:
        delete_job_output(store, settings, job_id)
    if kind == "slide":
        store.delete_slide(input_id)
        shutil.rmtree(slide_paths(settings, input_id).root, ignore_errors=True)
    else:
        store.delete_sequence(input_id)
        shutil.rmtree(sequence_paths(settings, input_id).root, ignore_errors=True)
    return removed
