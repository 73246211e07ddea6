"""Persistent state of slides, jobs, finished regions and live workers (SQLAlchemy Core).

SQLite when embedded, PostgreSQL when distributed; every state change is one atomic
statement, so the API and any number of worker processes can share it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from workers.errors import NotFound

metadata = sa.MetaData()
DEFAULT_TENANT = "default"  # the tenant of every object created before tenants existed


def _tenant_column() -> sa.Column[str]:
    """Whose object a row is: the API key's tenant that created it."""
    return sa.Column(
        "tenant", sa.String(64), nullable=False, server_default=DEFAULT_TENANT, index=True
    )


slides = sa.Table(
    "slides",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("filename", sa.String(512), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("path", sa.String(2048), nullable=False),
    sa.Column("info", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    _tenant_column(),
)

sequences = sa.Table(
    "sequences",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("filename", sa.String(512), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False, doc="the client's acquisition metadata"),
    sa.Column("info", sa.JSON, nullable=False, doc="frame count, size, channels, container"),
    sa.Column("created_at", sa.Float, nullable=False),
    _tenant_column(),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("slide_id", sa.String(36), index=True, doc="the input slide, or null"),
    sa.Column("sequence_id", sa.String(36), index=True, doc="the input frame sequence, or null"),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("regions_total", sa.Integer, nullable=False, default=0),
    sa.Column("tiles_total", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("provider", sa.String(64)),
    sa.Column("model_sha256", sa.String(64)),
    sa.Column("finalizer", sa.String(64), doc="id of the task that claimed the finish"),
    sa.Column("finalizer_at", sa.Float, doc="when it claimed it"),
    sa.Column("timings", sa.JSON, nullable=False, default=dict),
    sa.Column("blocks_total", sa.Integer, doc="blur classification blocks (0: none)"),
    sa.Column("metrics", sa.JSON, doc="what the job found and did, once finished"),
    sa.Column("hooks", sa.JSON, doc="each hook's state, result and error, once finished"),
    sa.Column("client_metadata", sa.JSON, doc="the client's metadata, carried into events"),
    sa.Column("active_at", sa.Float, doc="when a task of the job last made progress (its lease)"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("output_deleted_at", sa.Float, doc="when its files were deleted (or null)"),
    _tenant_column(),
)

job_regions = sa.Table(
    "job_regions",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("region_index", sa.Integer, primary_key=True),
    sa.Column("tiles", sa.Integer, nullable=False),
    sa.Column("tiles_restored", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("done_at", sa.Float, nullable=False),
)

job_blocks = sa.Table(
    "job_blocks",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("block_index", sa.Integer, primary_key=True),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("done_at", sa.Float, nullable=False),
)

task_attempts = sa.Table(
    "task_attempts",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("task", sa.String(16), primary_key=True, doc="region, block, frames, hooks..."),
    sa.Column("item", sa.Integer, primary_key=True, doc="the region, block or batch index"),
    sa.Column("attempts", sa.Integer, nullable=False),
)

job_tile_progress = sa.Table(
    "job_tile_progress",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("region_index", sa.Integer, primary_key=True),
    sa.Column("tiles_done", sa.Integer, nullable=False),
    sa.Column("first_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

job_hook_regions = sa.Table(
    "job_hook_regions",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("region_index", sa.Integer, primary_key=True),
    sa.Column("done_at", sa.Float, nullable=False),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("secret", sa.String(512), nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    _tenant_column(),
)

webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("job_id", sa.String(36), index=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("webhook_id", sa.String(36), nullable=False, index=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("delivered", sa.Boolean, nullable=False),
    sa.Column("next_attempt_in_s", sa.Float),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True, doc="the client's Idempotency-Key"),
    sa.Column("route", sa.String(64), primary_key=True, doc="method and path: POST /v1/jobs"),
    sa.Column("body_sha256", sa.String(64), doc="of the request body (jobs; null for uploads)"),
    sa.Column("resource_id", sa.String(36), nullable=False, doc="the job, slide or sequence"),
    sa.Column("state", sa.String(16), nullable=False, doc="pending (an upload runs) or done"),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False, index=True),
    sa.Column("actor", sa.String(64), nullable=False, doc="API key id, OIDC subject or system"),
    sa.Column("tenant", sa.String(64)),
    sa.Column("action", sa.String(32), nullable=False, index=True, doc="e.g. job.completed"),
    sa.Column("object_id", sa.String(64), doc="the slide, sequence, job or key concerned"),
    sa.Column("detail", sa.String(200), doc="never PHI: a state, a file kind, a reason"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True, doc="the public part of the key"),
    sa.Column("tenant", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False, doc="read, submit, admin"),
    sa.Column("secret_hash", sa.String(64), nullable=False, doc="SHA-256 of the secret, hex"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),
    sa.Column("revoked_at", sa.Float),
    sa.Column("last_used_at", sa.Float),
)

workers_seen = sa.Table(
    "workers",
    metadata,
    sa.Column("hostname", sa.String(256), primary_key=True),
    sa.Column("provider", sa.String(64)),
    sa.Column("last_seen", sa.Float, nullable=False),
)

ACTIVE_STATES = ("queued", "running", "finalizing")
FINAL_STATES = ("completed", "failed", "cancelled")
Guard = Callable[[Connection], None]  # runs in an insert's transaction; raising rolls it back


def new_id() -> str:
    """A random identifier for slides and jobs."""
    return uuid.uuid4().hex


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _add_missing_columns(engine: Engine) -> None:
    """Add columns that a newer release defines to tables an older release created."""
    inspector = sa.inspect(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present:
                    kind = column.type.compile(dialect=engine.dialect)
                    default = column.server_default
                    fill = f" DEFAULT '{default.arg}'" if default is not None else ""  # type: ignore[attr-defined]
                    conn.execute(
                        sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}{fill}")
                    )


def _allow_null_slide(engine: Engine) -> None:
    """Jobs on frame sequences have no slide: drop an older release's NOT NULL (PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE jobs ALTER COLUMN slide_id DROP NOT NULL"))


def _of(table: sa.Table, tenant: str | None) -> list[sa.ColumnElement[bool]]:
    """The condition that a row belongs to ``tenant`` (none when None: every tenant's)."""
    return [] if tenant is None else [table.c.tenant == tenant]


def _upgraded_params(job: dict[str, Any]) -> dict[str, Any]:
    """A job's parameters with the keys that releases before blur routing did not store."""
    params: dict[str, Any] = job["params"]
    if "models" in params:
        return params
    return {
        "auto": False,
        "classify": False,
        "min_confidence": 0.6,
        "models": [job["model"]],
        **params,
    }


class Store:
    """Slides, jobs, regions and workers in one database."""

    def __init__(self, url: str) -> None:
        self.engine = _make_engine(url)
        metadata.create_all(self.engine)
        _add_missing_columns(self.engine)
        _allow_null_slide(self.engine)
        from workers import audit  # it reads this module's tables

        audit.make_append_only(self.engine)

    def dispose(self) -> None:
        """Close pooled connections (after a fork, or at shutdown)."""
        self.engine.dispose()

    # slides
    def add_slide(self, record: dict[str, Any], guard: Guard | None = None) -> dict[str, Any]:
        """Insert a slide record and return it (``guard``: see ``add_job``)."""
        record = {"created_at": time.time(), **record}
        with self.engine.begin() as conn:
            if guard is not None:
                guard(conn)
            conn.execute(slides.insert().values(**record))
        return record

    def get_slide(self, slide_id: str, tenant: str | None = None) -> dict[str, Any]:
        """One slide record (of ``tenant`` only, when given)."""
        query = sa.select(slides).where(slides.c.id == slide_id, *_of(slides, tenant))
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"slide {slide_id} does not exist")
        return dict(row)

    def list_slides(self, limit: int = 100, tenant: str | None = None) -> list[dict[str, Any]]:
        """Newest slides first (of ``tenant`` only, when given)."""
        query = sa.select(slides).where(*_of(slides, tenant))
        query = query.order_by(slides.c.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def delete_slide(self, slide_id: str) -> None:
        """Forget a slide."""
        with self.engine.begin() as conn:
            conn.execute(slides.delete().where(slides.c.id == slide_id))

    # frame sequences
    def add_sequence(self, record: dict[str, Any], guard: Guard | None = None) -> dict[str, Any]:
        """Insert a frame-sequence record and return it (``guard``: see ``add_job``)."""
        record = {"created_at": time.time(), **record}
        with self.engine.begin() as conn:
            if guard is not None:
                guard(conn)
            conn.execute(sequences.insert().values(**record))
        return record

    def get_sequence(self, sequence_id: str, tenant: str | None = None) -> dict[str, Any]:
        """One frame-sequence record (of ``tenant`` only, when given)."""
        query = sa.select(sequences).where(sequences.c.id == sequence_id, *_of(sequences, tenant))
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"sequence {sequence_id} does not exist")
        return dict(row)

    def list_sequences(self, limit: int = 100, tenant: str | None = None) -> list[dict[str, Any]]:
        """Newest frame sequences first (of ``tenant`` only, when given)."""
        query = sa.select(sequences).where(*_of(sequences, tenant))
        query = query.order_by(sequences.c.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def delete_sequence(self, sequence_id: str) -> None:
        """Forget a frame sequence."""
        with self.engine.begin() as conn:
            conn.execute(sequences.delete().where(sequences.c.id == sequence_id))

    # jobs
    def add_job(
        self, record: dict[str, Any], guard: Guard | None = None, actor: str = "system"
    ) -> dict[str, Any]:
        """Insert a queued job and return it.

        ``guard`` runs first in the same transaction (it records an idempotency key); when it
        raises, nothing is inserted.
        """
        record = {"created_at": time.time(), "state": "queued", "timings": {}, **record}
        with self.engine.begin() as conn:
            if guard is not None:
                guard(conn)
            conn.execute(jobs.insert().values(**record))
            event = {"at": record["created_at"], "actor": actor, "action": "job.queued"}
            tenant = record.get("tenant")
            conn.execute(
                audit_events.insert().values(object_id=record["id"], tenant=tenant, **event)
            )
        return self.get_job(record["id"])

    def get_job(self, job_id: str) -> dict[str, Any]:
        """One job record with its progress."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
            if row is None:
                raise NotFound(f"job {job_id} does not exist")
            done = conn.execute(
                sa.select(
                    sa.func.count(), sa.func.coalesce(sa.func.sum(job_regions.c.tiles), 0)
                ).where(job_regions.c.job_id == job_id)
            ).one()
            finished = sa.select(job_regions.c.region_index).where(job_regions.c.job_id == job_id)
            running = conn.execute(
                sa.select(
                    sa.func.coalesce(sa.func.sum(job_tile_progress.c.tiles_done), 0),
                ).where(
                    job_tile_progress.c.job_id == job_id,
                    job_tile_progress.c.region_index.not_in(finished),
                )
            ).one()
            first_tile_at = conn.execute(
                sa.select(sa.func.min(job_tile_progress.c.first_at)).where(
                    job_tile_progress.c.job_id == job_id
                )
            ).scalar()
            blocks = conn.execute(
                sa.select(sa.func.count()).where(job_blocks.c.job_id == job_id)
            ).scalar()
        record = dict(row)
        return {
            **record,
            "params": _upgraded_params(record),
            "regions_done": int(done[0]),
            "tiles_done": int(done[1]) + int(running[0]),
            "restore_started_at": first_tile_at,
            "blocks_done": int(blocks or 0),
        }

    def list_jobs(self, limit: int = 100, tenant: str | None = None) -> list[dict[str, Any]]:
        """Newest jobs first (of ``tenant`` only, when given)."""
        query = sa.select(jobs.c.id).where(*_of(jobs, tenant))
        query = query.order_by(jobs.c.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(query)]
        return [self.get_job(i) for i in ids]

    def job_state(self, job_id: str) -> str:
        """Just the state, cheaply (polled between tile batches)."""
        with self.engine.connect() as conn:
            state = conn.execute(sa.select(jobs.c.state).where(jobs.c.id == job_id)).scalar()
        if state is None:
            raise NotFound(f"job {job_id} does not exist")
        return str(state)

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set fields of a job."""
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**fields))

    def transition(
        self,
        job_id: str,
        from_states: tuple[str, ...],
        to_state: str,
        *,
        actor: str = "system",
        **fields: Any,
    ) -> bool:
        """Atomically move a job between states; False when it was in none of ``from_states``.

        The change is written to the audit log in the same transaction, as done by ``actor``.
        """
        query = (
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.state.in_(from_states))
            .values(state=to_state, active_at=time.time(), **fields)
        )
        with self.engine.begin() as conn:
            if conn.execute(query).rowcount != 1:
                return False
            tenant = sa.select(jobs.c.tenant).where(jobs.c.id == job_id).scalar_subquery()
            event = {"at": time.time(), "actor": actor, "action": f"job.{to_state}"}
            conn.execute(audit_events.insert().values(object_id=job_id, tenant=tenant, **event))
            return True

    def merge_timings(self, job_id: str, **timings: float) -> None:
        """Add named durations (seconds) to a job's timings."""
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(jobs.c.timings).where(jobs.c.id == job_id)).scalar()
            conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(timings={**(current or {}), **timings})
            )

    # regions
    def mark_region_done(
        self, job_id: str, region_index: int, tiles: int, tiles_restored: int, seconds: float
    ) -> bool:
        """Record a finished region once; False if it was already recorded."""
        values = {"job_id": job_id, "region_index": region_index, "tiles": tiles}
        values.update(tiles_restored=tiles_restored, seconds=seconds, done_at=time.time())
        self.touch_job(job_id)
        return self._insert_once(job_regions, values)

    def touch_job(self, job_id: str) -> None:
        """Renew the job's lease: one of its tasks is making progress now."""
        self.update_job(job_id, active_at=time.time())

    def claim_stale(self, job_id: str, lease_s: float) -> bool:
        """Atomically take over an active job none of whose tasks progressed for ``lease_s``.

        True for exactly one caller: it renews the lease, so others see the job as fresh.
        """
        now = time.time()
        last = sa.func.coalesce(jobs.c.active_at, jobs.c.started_at, jobs.c.created_at)
        query = (
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.state.in_(ACTIVE_STATES), last < now - lease_s)
            .values(active_at=now)
        )
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount == 1

    def record_tile_progress(self, job_id: str, region_index: int, tiles_done: int) -> None:
        """How many tiles of a running region are finished (the region row takes over)."""
        now = time.time()
        where = (job_tile_progress.c.job_id == job_id) & (
            job_tile_progress.c.region_index == region_index
        )
        self.touch_job(job_id)
        with self.engine.begin() as conn:
            updated = conn.execute(
                job_tile_progress.update()
                .where(where)
                .values(tiles_done=tiles_done, updated_at=now)
            ).rowcount
        if not updated:
            values = {"job_id": job_id, "region_index": region_index, "tiles_done": tiles_done}
            self._insert_once(job_tile_progress, {**values, "first_at": now, "updated_at": now})

    def count_attempt(self, job_id: str, task: str, item: int) -> int:
        """Record that a task starts on ``item`` of a job; how many times it has started."""
        key = {"job_id": job_id, "task": task, "item": item}
        if self._insert_once(task_attempts, {**key, "attempts": 1}):
            return 1
        where = [task_attempts.c[name] == value for name, value in key.items()]
        with self.engine.begin() as conn:
            conn.execute(
                task_attempts.update().where(*where).values(attempts=task_attempts.c.attempts + 1)
            )
            return int(conn.execute(sa.select(task_attempts.c.attempts).where(*where)).scalar_one())

    def mark_block_done(self, job_id: str, block_index: int, seconds: float) -> bool:
        """Record a classified block once; False if it was already recorded."""
        values = {"job_id": job_id, "block_index": block_index, "seconds": seconds}
        self.touch_job(job_id)
        return self._insert_once(job_blocks, {**values, "done_at": time.time()})

    def _insert_once(self, table: sa.Table, values: dict[str, Any]) -> bool:
        """Insert a row unless its key exists; False if it did."""
        try:
            with self.engine.begin() as conn:
                conn.execute(table.insert().values(**values))
        except IntegrityError:
            return False
        return True

    def mark_hook_region_done(self, job_id: str, region_index: int) -> bool:
        """Record that a region's hooks ran; False when it was already recorded."""
        values = {"job_id": job_id, "region_index": region_index, "done_at": time.time()}
        self.touch_job(job_id)
        return self._insert_once(job_hook_regions, values)

    def done_hook_regions(self, job_id: str) -> set[int]:
        """Regions whose hooks have run."""
        query = sa.select(job_hook_regions.c.region_index).where(
            job_hook_regions.c.job_id == job_id
        )
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(query)}

    def done_blocks(self, job_id: str) -> set[int]:
        """Indexes of the blocks already classified."""
        query = sa.select(job_blocks.c.block_index).where(job_blocks.c.job_id == job_id)
        with self.engine.connect() as conn:
            return {int(r[0]) for r in conn.execute(query)}

    def block_seconds(self, job_id: str) -> list[float]:
        """Seconds each classified block took."""
        query = sa.select(job_blocks.c.seconds).where(job_blocks.c.job_id == job_id)
        with self.engine.connect() as conn:
            return [float(r[0]) for r in conn.execute(query)]

    def done_regions(self, job_id: str) -> set[int]:
        """Indexes of the regions already written."""
        query = sa.select(job_regions.c.region_index).where(job_regions.c.job_id == job_id)
        with self.engine.connect() as conn:
            return {int(r[0]) for r in conn.execute(query)}

    def region_seconds(self, job_id: str) -> list[float]:
        """Seconds each finished region took."""
        query = sa.select(job_regions.c.seconds).where(job_regions.c.job_id == job_id)
        with self.engine.connect() as conn:
            return [float(r[0]) for r in conn.execute(query)]

    # workers
    def worker_heartbeat(self, hostname: str, provider: str | None) -> None:
        """Say that a worker is alive now."""
        with self.engine.begin() as conn:
            updated = conn.execute(
                workers_seen.update()
                .where(workers_seen.c.hostname == hostname)
                .values(last_seen=time.time(), provider=provider)
            ).rowcount
        if not updated:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        workers_seen.insert().values(
                            hostname=hostname, provider=provider, last_seen=time.time()
                        )
                    )
            except IntegrityError:
                pass

    def live_workers(self, within_s: float) -> list[dict[str, Any]]:
        """Workers seen within the last ``within_s`` seconds."""
        query = sa.select(workers_seen).where(workers_seen.c.last_seen >= time.time() - within_s)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]
