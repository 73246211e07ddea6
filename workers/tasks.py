"""Celery tasks: thin adapters that take ids and call :mod:`workers.jobs`."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from celery import Task
from celery.signals import worker_process_init, worker_ready

from workers import job_exports, job_hooks, jobs, laser_jobs, sequence_jobs, webhooks
from workers.celery_app import app
from workers.engine.read_errors import without_paths
from workers.memory_limit import limit_data
from workers.settings import get_settings
from workers.store import Store

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0
WORKER_ALIVE_S = 3 * HEARTBEAT_S
LATE_STATES = ("finalizing", "completed")
_store: Store | None = None


def store() -> Store:
    """The job store of this process (opened lazily, never shared across a fork)."""
    global _store
    if _store is None:
        _store = Store(get_settings().resolved_database_url)
    return _store


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    global _store
    _store = None


@worker_process_init.connect
def _limit_memory(**_: Any) -> None:
    limit_data(get_settings().worker_memory_mb)  # a file that decodes too large fails its job


def _provider() -> str:
    from models.runtime import available_providers

    return available_providers(get_settings().ort_providers)[0]


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    hostname = getattr(sender, "hostname", None) or socket.gethostname()
    provider = _provider()
    settings = get_settings()

    def beat() -> None:
        event, last_reconcile = threading.Event(), time.monotonic()
        while not event.wait(HEARTBEAT_S):
            try:
                store().worker_heartbeat(hostname, provider)
                if time.monotonic() - last_reconcile >= settings.reconcile_interval_s:
                    last_reconcile = time.monotonic()
                    if _broker_queue_empty():
                        resume_unfinished(hostname, at_start=False)
            except Exception:  # the database may be restarting; try again next beat
                log.exception("worker heartbeat failed")

    store().worker_heartbeat(hostname, provider)
    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    if settings.resume_jobs_on_worker_start:
        resume_unfinished(hostname, at_start=True)


def _broker_queue_empty() -> bool:
    """Whether no task waits in the broker (then a stalled job's work was lost, not queued).

    Declaring the queue also restores its binding where the broker lost its data (a Redis
    restarted empty drops every message sent to an unbound queue).
    """
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        queue = app.amqp.queues[app.conf.task_default_queue](channel)
        queue.declare()
        declared = queue.queue_declare()  # not passive: Redis deletes an empty queue's key
    return int(declared.message_count) == 0


def resume_unfinished(hostname: str, at_start: bool) -> list[str]:
    """Requeue the next step of unfinished jobs that no live task is working on.

    A worker that starts alone (the embedded worker after a crash) resumes every unfinished
    job. Otherwise, at start or when reconciling, only jobs none of whose tasks progressed
    within ``job_lease_s``, each claimed atomically by one worker: starting or restarting a
    worker beside others never doubles a job they are running.
    """
    others = [w for w in store().live_workers(WORKER_ALIVE_S) if w["hostname"] != hostname]
    resumed = []
    for job_id, state in jobs.unfinished_jobs(store()):
        everything = at_start and not others
        if not everything and not store().claim_stale(job_id, get_settings().job_lease_s):
            continue
        log.info("resuming %s job %s", state, job_id)
        resumed.append(job_id)
        if state == "finalizing":
            finish_job.delay(job_id, takeover=True)
        else:
            start_job.delay(job_id)
    return resumed


class JobTask(Task):  # type: ignore[misc]
    """Marks the job failed when its task raises."""

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Record the error in the job, unless the job has moved on without this task.

        A late duplicate of a region, block or hooks task (redelivered, or requeued by a
        resume) can fail once the finish has moved the output; the job is fine.
        """
        message = without_paths(getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
        if self.name != finish_job.name and store().job_state(args[0]) in LATE_STATES:
            log.warning("ignoring %s of job %s, which is past it: %s", self.name, args[0], message)
            return
        if jobs.fail(store(), get_settings(), args[0], message):
            _emit(args[0], "job.failed")


def _emit(job_id: str, kind: webhooks.WebhookEvent) -> None:
    """Record a job event and queue its delivery to each subscribed webhook."""
    for event_id, webhook_id in webhooks.emit(store(), get_settings(), job_id, kind):
        deliver_webhook.delay(event_id, webhook_id)


@app.task(name="restore.webhook", bind=True)
def deliver_webhook(self: Task, event_id: str, webhook_id: str, attempt: int = 1) -> None:
    """POST one event to one receiver; on failure queue the next attempt after its backoff."""
    retry = webhooks.deliver(store(), get_settings(), event_id, webhook_id, attempt)
    if retry is not None:
        deliver_webhook.apply_async((event_id, webhook_id, attempt + 1), countdown=retry)


@app.task(name="restore.start_job", base=JobTask, bind=True)
def start_job(self: Task, job_id: str) -> None:
    """Plan the job and queue what it does first: classify, register frames, or restore."""
    job = store().get_job(job_id)
    if laser_jobs.is_laser_scan(job):
        step = laser_jobs.start(store(), get_settings(), job_id)
    elif sequence_jobs.needs_registration(get_settings(), job):
        step = sequence_jobs.start_registration(store(), get_settings(), job_id)
    else:
        step = jobs.start(store(), get_settings(), job_id)
    if step.claimed:
        _emit(job_id, "job.started")
    if step.phase == "classify":
        for block_index in step.todo:
            classify_block.delay(job_id, block_index)
    elif step.phase == "register":
        for block_index in step.todo:
            register_frames.delay(job_id, block_index)
        if not step.todo and store().job_state(job_id) == "running":
            _after_registration(job_id)
    elif laser_jobs.is_laser_scan(job):
        for batch in step.todo:
            restore_frames.delay(job_id, batch)
        if not step.todo and store().job_state(job_id) == "running":
            finish_job.delay(job_id)
    else:
        _queue_regions(job_id, step.todo)


def _after_registration(job_id: str) -> None:
    """Place the frames, then start the job again: now it restores the mosaic like a slide."""
    sequence_jobs.solve(store(), get_settings(), job_id)
    start_job.delay(job_id)


@app.task(name="restore.register", base=JobTask, bind=True)
def register_frames(self: Task, job_id: str, block_index: int) -> None:
    """Measure one block of frame-pair shifts; the last block places the frames."""
    if sequence_jobs.register_block(store(), get_settings(), job_id, block_index):
        _after_registration(job_id)


@app.task(name="restore.frames", base=JobTask, bind=True)
def restore_frames(self: Task, job_id: str, batch: int) -> None:
    """Restore one batch of laser-scan frames; the last batch queues the finish."""
    if laser_jobs.run_batch(store(), get_settings(), job_id, batch):
        finish_job.delay(job_id)


def _queue_regions(job_id: str, todo: list[int]) -> None:
    for region_index in todo:
        restore_region.delay(job_id, region_index)
    if not todo:
        _after_regions(job_id)


def _after_regions(job_id: str) -> None:
    """Queue the hooks of every region still without them, or else the finish."""
    todo = job_hooks.todo(store(), job_id)
    for region_index in todo:
        run_hooks.delay(job_id, region_index)
    if not todo and jobs.ready_to_finish(store(), job_id):
        finish_job.delay(job_id)


@app.task(name="restore.classify", base=JobTask, bind=True)
def classify_block(self: Task, job_id: str, block_index: int) -> None:
    """Classify one block of blur-map cells; the last block routes and queues the regions."""
    if jobs.run_block(store(), get_settings(), job_id, block_index):
        _queue_regions(job_id, jobs.route(store(), get_settings(), job_id))


@app.task(name="restore.region", base=JobTask, bind=True)
def restore_region(self: Task, job_id: str, region_index: int) -> None:
    """Restore one region; the task that completes the last region queues what follows."""
    if jobs.run_region(store(), get_settings(), job_id, region_index):
        _after_regions(job_id)


@app.task(name="restore.hooks", base=JobTask, bind=True)
def run_hooks(self: Task, job_id: str, region_index: int) -> None:
    """Run the job's hooks on one region; the task that completes the last queues the finish."""
    if job_hooks.run_region(store(), get_settings(), job_id, region_index):
        finish_job.delay(job_id)


@app.task(name="restore.export_ome_tiff", bind=True)
def export_ome_tiff(self: Task, job_id: str) -> None:
    """Write a finished job's OME-TIFF (the API queues it on the first download request)."""
    job_exports.export_ome_tiff(store(), get_settings(), job_id)


@app.task(name="restore.finish", base=JobTask, bind=True)
def finish_job(self: Task, job_id: str, takeover: bool = False) -> None:
    """Build the pyramid and publish the output."""
    finish = laser_jobs.finish if laser_jobs.is_laser_scan(store().get_job(job_id)) else jobs.finish
    if finish(store(), get_settings(), job_id, self.request.id, takeover):
        _emit(job_id, "job.completed")
