"""Deleting job outputs and uploads: on request, and once older than ``RESTORE_RETENTION_DAYS``.

``python -m app`` applies the retention every ``RESTORE_RETENTION_SWEEP_S``; ``python -m
workers.retention`` applies it once (for cron, where the API is served otherwise). Nothing an
active (queued, running or finalizing) job needs is ever deleted: not its folder, not its slide,
reference slide or frame sequence. A job's record stays, marked ``output_deleted_at``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa

from workers.errors import Conflict
from workers.layout import job_paths, sequence_paths, slide_paths
from workers.settings import Settings, get_settings
from workers.store import ACTIVE_STATES, FINAL_STATES, Store, jobs, sequences, slides

log = logging.getLogger(__name__)
DAY_S = 86_400.0


@dataclass
class Swept:
    """What one sweep deleted: ids of jobs (their files), slides and sequences."""

    jobs: list[str] = field(default_factory=list)
    slides: list[str] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)


def delete_job_output(store: Store, settings: Settings, job_id: str) -> None:
    """Delete every file of a finished job and mark it so; Conflict while the job is active.

    Deleting twice is harmless (the folder is removed again, the first time stays recorded).
    """
    state = store.job_state(job_id)
    query = (
        jobs.update()
        .where(
            jobs.c.id == job_id,
            jobs.c.state.in_(FINAL_STATES),
            jobs.c.output_deleted_at.is_(None),
        )
        .values(output_deleted_at=time.time())
    )
    with store.engine.begin() as conn:
        marked = conn.execute(query).rowcount == 1
    if not marked and state in ACTIVE_STATES:
        raise Conflict(f"job {job_id} is {state}; its output can be deleted once it has finished")
    shutil.rmtree(job_paths(settings, job_id).root, ignore_errors=True)


def sweep(store: Store, settings: Settings, now: float | None = None) -> Swept:
    """Delete what is older than the retention (finished jobs by their end, uploads by theirs)."""
    if settings.retention_days <= 0:
        return Swept()
    before = (time.time() if now is None else now) - settings.retention_days * DAY_S
    swept = Swept(jobs=_expired_jobs(store, before))
    for job_id in swept.jobs:
        delete_job_output(store, settings, job_id)
    slide_ids, sequence_ids = _inputs_in_use(store)
    for slide_id in _uploaded_before(store, slides, before, slide_ids):
        store.delete_slide(slide_id)
        shutil.rmtree(slide_paths(settings, slide_id).root, ignore_errors=True)
        swept.slides.append(slide_id)
    for sequence_id in _uploaded_before(store, sequences, before, sequence_ids):
        store.delete_sequence(sequence_id)
        shutil.rmtree(sequence_paths(settings, sequence_id).root, ignore_errors=True)
        swept.sequences.append(sequence_id)
    return swept


def _expired_jobs(store: Store, before: float) -> list[str]:
    """Finished jobs that ended before ``before`` and still have their files."""
    ended = sa.func.coalesce(jobs.c.finished_at, jobs.c.created_at)
    query = sa.select(jobs.c.id).where(
        jobs.c.state.in_(FINAL_STATES), jobs.c.output_deleted_at.is_(None), ended < before
    )
    with store.engine.connect() as conn:
        return [row[0] for row in conn.execute(query)]


def _inputs_in_use(store: Store) -> tuple[set[str], set[str]]:
    """Slides (input or reference) and sequences that an active job reads."""
    query = sa.select(jobs.c.slide_id, jobs.c.sequence_id, jobs.c.params).where(
        jobs.c.state.in_(ACTIVE_STATES)
    )
    slide_ids: set[str] = set()
    sequence_ids: set[str] = set()
    with store.engine.connect() as conn:
        for slide_id, sequence_id, params in conn.execute(query):
            slide_ids.update(i for i in (slide_id, params.get("reference_slide_id")) if i)
            sequence_ids.update([sequence_id] if sequence_id else [])
    return slide_ids, sequence_ids


def _uploaded_before(store: Store, table: sa.Table, before: float, keep: set[str]) -> list[str]:
    """Ids of a table's uploads made before ``before``, except those in ``keep``."""
    query = sa.select(table.c.id).where(table.c.created_at < before)
    with store.engine.connect() as conn:
        return [row[0] for row in conn.execute(query) if row[0] not in keep]


def sweep_periodically(store: Store, settings: Settings, stop: threading.Event) -> None:
    """Sweep now and every ``retention_sweep_s`` until ``stop`` is set (a thread's target)."""
    if settings.retention_days <= 0:
        return
    while True:
        try:
            _log(sweep(store, settings), settings)
        except Exception:  # the database may be restarting; try again next time
            log.exception("retention sweep failed")
        if stop.wait(settings.retention_sweep_s):
            return


def _log(swept: Swept, settings: Settings) -> None:
    if swept.jobs or swept.slides or swept.sequences:
        log.info(
            "retention (%g days): deleted the files of %d jobs, %d slides, %d sequences",
            settings.retention_days,
            len(swept.jobs),
            len(swept.slides),
            len(swept.sequences),
        )


def main(argv: list[str] | None = None) -> None:
    """Apply the retention once and print what was deleted as JSON."""
    parser = argparse.ArgumentParser(prog="python -m workers.retention", description=__doc__)
    parser.add_argument(
        "--days", type=float, help="delete what is older than this (default RESTORE_RETENTION_DAYS)"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.days is not None:
        settings = settings.model_copy(update={"retention_days": args.days})
    if settings.retention_days <= 0:
        parser.exit(message="retention is off (RESTORE_RETENTION_DAYS=0 keeps everything)\n")
    store = Store(settings.resolved_database_url)
    try:
        print(json.dumps(asdict(sweep(store, settings))))
    finally:
        store.dispose()


if __name__ == "__main__":
    main()
