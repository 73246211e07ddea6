"""Settings shared by the API and the workers, read from ``RESTORE_*`` environment variables.

The same code runs embedded (filesystem broker, SQLite) or distributed (Redis, PostgreSQL);
only these settings differ.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from workers import worker_pool

ZOO_DIR = Path(__file__).resolve().parent.parent / "models" / "zoo"


class Settings(BaseSettings):
    """Every knob of the server; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="RESTORE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("var"), description="slides, job outputs, broker files")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL for job state; default SQLite in data_dir"
    )
    broker_url: str = Field(
        default="filesystem://", description="Celery broker: filesystem:// or redis://host:6379/0"
    )
    models_dirs: list[Path] = Field(
        default_factory=lambda: [ZOO_DIR], description="folders holding <model>/manifest.json"
    )
    embedded_worker: bool = Field(
        default=True, description="`serve` also starts a Celery worker subprocess"
    )
    worker_concurrency: int = Field(
        default=0,
        ge=0,
        description="worker processes per worker; 0: one per usable core, as memory allows",
    )
    resume_jobs_on_worker_start: bool = Field(
        default=True,
        description="a starting worker requeues unfinished jobs (needed with the filesystem "
        "broker, which cannot redeliver a killed worker's tasks; Redis redelivers by itself)",
    )
    input_deletion: Literal["outputs", "keep", "refuse"] = Field(
        default="outputs",
        description="deleting a slide or sequence also deletes the files of the jobs made from "
        "it (outputs), leaves them (keep), or is refused while any remain (refuse)",
    )
    retention_days: float = Field(
        default=0.0,
        ge=0.0,
        description="delete finished jobs' outputs and uploads older than this; 0 keeps all",
    )
    retention_sweep_s: float = Field(
        default=3600.0, gt=0, description="how often `python -m app` applies the retention"
    )
    job_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="a job none of whose tasks progressed for this long is resumed by a worker",
    )
    max_task_attempts: int = Field(
        default=3,
        ge=1,
        description="a region (block, batch) whose task stopped its worker this often fails "
        "its job instead of being retried forever",
    )
    reconcile_interval_s: float = Field(
        default=15.0, gt=0, description="how often each worker looks for such stalled jobs"
    )
    ort_threads: int = Field(
        default=0,
        ge=0,
        description="ONNX Runtime intra-op threads per worker process; 0: the usable cores "
        "split among the worker processes",
    )
    ort_providers: list[str] = Field(
        default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="ONNX Runtime providers, tried in order",
    )
    max_upload_bytes: int = Field(default=50 * 2**30, description="largest accepted upload")
    max_slide_pixels: int = Field(
        default=2**32 - 1, description="largest level-0 width x height accepted"
    )
    max_plain_image_pixels: int = Field(
        default=100_000_000, description="largest PNG/JPEG (decoded whole into memory)"
    )
    max_pixels_per_byte: float = Field(
        default=1000.0,
        gt=0,
        description="most pixels a TIFF-based slide, PNG or JPEG, or all frames of a TIFF or "
        "zip sequence together, may declare per byte of its file; more is refused as a "
        "decompression bomb or a damaged header",
    )
    max_unpacked_bytes: int = Field(
        default=50 * 2**30, ge=0, description="most bytes a zip upload may expand to on disk"
    )
    max_zip_ratio: float = Field(
        default=200.0,
        gt=1,
        description="most a zip member over 1 MiB may expand relative to its compressed size; "
        "more is refused as a zip bomb before anything is written",
    )
    sandbox_memory_mb: int = Field(
        default=2048, description="address-space limit of processes that open untrusted files"
    )
    worker_memory_mb: int = Field(
        default=8192,
        ge=0,
        description="memory (RLIMIT_DATA: heap and private memory) each worker process may "
        "use, so a file that decodes to more fails its job, not the host; 0: no limit",
    )
    sandbox_timeout_s: float = Field(default=60.0)
    sequence_decode_timeout_s: float = Field(
        default=900.0, gt=0, description="longest decoding of an uploaded frame sequence"
    )
    max_sequence_frames: int = Field(default=100_000, ge=1, description="most frames accepted")
    sequence_pairs_per_task: int = Field(
        default=64, ge=1, description="frame pairs one registration task measures"
    )
    sequence_frames_per_task: int = Field(
        default=16, ge=1, description="frames one laser-scan restoration task handles"
    )
    region_px: int = Field(default=2048, description="input pixels per side of one region task")
    chunk_px: int = Field(default=512, description="OME-Zarr chunk size per side")
    tile_batch: int = Field(default=4, ge=1, description="most tiles per ONNX Runtime call")
    tile_batch_px: int = Field(
        default=1_500_000,
        ge=1,
        description="most output pixels per ONNX Runtime call past its first tile (memory)",
    )
    blur_cell_px: int = Field(
        default=256, ge=16, description="blur-map cell side (level-0 px; a power of two)"
    )
    rescan_blurred_share: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="share of tissue blurred above which a job recommends a rescan",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="web origins (other than the server's own) allowed to call the API and read "
        'outputs, e.g. ["https://viewer.hospital.lan"]; none by default, never a wildcard '
        "unless set",
    )
    public_url: str | None = Field(
        default=None, description="this server's base URL, for absolute links in webhook events"
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="allow webhook receivers on loopback and private addresses "
        "(scripts/serve.sh turns it on for the embedded quick start)",
    )
    webhook_max_attempts: int = Field(default=6, ge=1, description="attempts per event")
    webhook_backoff_s: float = Field(
        default=5.0, gt=0, description="wait before the second attempt; doubles after each"
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    idempotency_ttl_s: float = Field(
        default=86400.0,
        gt=0,
        description="how long an Idempotency-Key is remembered: a retry with it within this "
        "time gets the first request's job, slide or sequence",
    )
    idempotency_pending_s: float = Field(
        default=3600.0,
        gt=0,
        description="an upload whose Idempotency-Key is still pending after this long (the "
        "server stopped mid-upload) no longer blocks a retry with that key",
    )
    rate_limit_per_s: float = Field(
        default=50.0,
        gt=0,
        description="requests per second each API key (or OIDC subject) may send",
    )
    rate_limit_burst: int = Field(
        default=100, ge=1, description="requests a key may send at once before its rate applies"
    )
    auth_failures_per_s: float = Field(
        default=1.0,
        gt=0,
        description="requests with an invalid key or token each client address may send per "
        "second, past the burst (slows key guessing; more answer 429)",
    )
    auth_failures_burst: int = Field(
        default=20, ge=1, description="invalid keys a client address may send at once"
    )
    oidc_issuer: str | None = Field(
        default=None, description="accept OIDC bearer tokens from this issuer (off when unset)"
    )
    oidc_audience: str | None = Field(
        default=None, description="the audience (aud) tokens must name, e.g. the client id"
    )
    oidc_jwks_url: str | None = Field(
        default=None, description="where the issuer's signing keys are (JWKS), fetched and cached"
    )
    oidc_jwks_file: Path | None = Field(
        default=None,
        description="or a local JWKS (JSON) or PEM public key file, for sites without a route "
        "to the issuer",
    )
    oidc_tenant_claim: str = Field(
        default="tenant", description="the token claim that names the caller's tenant"
    )
    broker_visibility_timeout_s: int = Field(default=3600)
    task_time_limit_s: int = Field(default=3600)

    @property
    def resolved_worker_concurrency(self) -> int:
        """Worker processes per worker: the setting, or one per core as memory allows."""
        if self.worker_concurrency:
            return self.worker_concurrency
        return worker_pool.default_concurrency(
            worker_pool.usable_cores(), worker_pool.host_memory_mb()
        )

    @property
    def resolved_ort_threads(self) -> int:
        """ONNX Runtime threads per worker process: the setting, or the cores split evenly."""
        if self.ort_threads:
            return self.ort_threads
        return worker_pool.default_threads(
            worker_pool.usable_cores(), self.resolved_worker_concurrency
        )

    @property
    def resolved_database_url(self) -> str:
        """The job-state database; SQLite inside ``data_dir`` unless set."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'jobs.db'}"

    @property
    def slides_dir(self) -> Path:
        """Where uploaded slides live, one folder each."""
        return self.data_dir / "slides"

    @property
    def sequences_dir(self) -> Path:
        """Where uploaded frame sequences are kept."""
        return self.data_dir / "sequences"

    @property
    def jobs_dir(self) -> Path:
        """Where job outputs live, one folder each."""
        return self.data_dir / "jobs"

    @property
    def admin_key_file(self) -> Path:
        """Where the first start writes the admin API key it creates (mode 600)."""
        return self.data_dir / "admin-api-key"

    @property
    def broker_dir(self) -> Path:
        """Message folder of the embedded filesystem broker."""
        return self.data_dir / "broker"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache or pass their own)."""
    return Settings()
