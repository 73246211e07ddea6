"""Request and response bodies of the REST API."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from workers.webhooks import WebhookEvent

MAX_METADATA_BYTES = 16384
Id = Annotated[str, StringConstraints(max_length=64, pattern=r"^[0-9A-Za-z_-]+$")]  # ids are hex


class SlidePublic(BaseModel):
    """An uploaded slide."""

    id: str
    filename: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    level_count: int
    level_dimensions: list[list[int]]
    level_downsamples: list[float]
    mpp_x: float | None
    mpp_y: float | None
    mpp_source: str | None = Field(
        default=None,
        description="'file' (read from the slide), 'upload' (the form's mpp field), or null: "
        "unknown, including implausible values such as a 72 dpi default (352.8 um/px)",
    )
    vendor: str
    reader: str
    channels: list[dict[str, Any]] = Field(
        default_factory=list,
        description="fluorescence channels: name, colour (RGB hex) and the display window "
        "[low, high] in the file's values (empty for RGB and grey slides)",
    )
    created_at: float
    thumbnail_url: str
    dzi_url: str


class SequencePublic(BaseModel):
    """An uploaded frame sequence and what follows from its metadata."""

    id: str
    filename: str
    sha256: str
    size_bytes: int
    created_at: float
    mode: str = Field(description="continuous-stage or laser-scan")
    frame_count: int
    frame_width: int
    frame_height: int
    channels: int = Field(description="1 (grey) or 3 (RGB); stored as 8-bit")
    source_dtype: str = Field(description="the file's sample type (16-bit is scaled to 8-bit)")
    container: str = Field(description="tiff, zip or video")
    container_rate_hz: float | None = Field(
        description="a video's own frame rate (the metadata's frame_rate_hz wins)"
    )
    motion_blur_px: float | None = Field(
        description="stage speed x exposure / pixel size: the motion blur each frame carries"
    )
    nominal_step_px: list[float] | None = Field(
        description="[dx, dy] from one frame to the next within a row (continuous-stage)"
    )
    frame_interval_s: float | None = Field(description="1 / frame_rate_hz")
    metadata: dict[str, Any] = Field(description="the acquisition metadata, as accepted")
    thumbnail_url: str


class EvaluationSpec(BaseModel):
    """The forward model an evaluation job degrades a sharp slide with before restoring it."""

    model_config = ConfigDict(extra="forbid")

    degradation: Literal["defocus", "motion", "mixed"]
    radius_px: float = Field(default=4.0, gt=0, le=20, description="defocus radius")
    kind: Literal["disk", "gaussian"] = Field(default="disk", description="defocus PSF")
    length_px: float = Field(default=15.0, gt=0, le=60, description="motion length")
    angle_deg: float = Field(default=0.0, ge=0, lt=180, description="motion direction (0 = x)")
    noise_std: float = Field(default=1 / 255, ge=0, le=0.1, description="Gaussian noise, of [0, 1]")
    seed: int = Field(default=0, ge=0, description="seed of the noise field")


class JobCreate(BaseModel):
    """What to restore and how (an unknown field is refused, never dropped)."""

    model_config = ConfigDict(extra="forbid")

    slide_id: Id | None = Field(default=None, description="the slide to restore")
    sequence_id: Id | None = Field(
        default=None, description="or the frame sequence to restore (POST /v1/sequences)"
    )
    model: str | list[str] = Field(
        default="auto",
        description="'auto' (slides: classify each tile's blur and run the matching model; "
        "sequences: deblur-motion for continuous-stage, line-shift correction + sr-x2 for "
        "laser-scan), a model name, or a chain of names run one after the other",
    )
    evaluate: EvaluationSpec | None = Field(
        default=None,
        description="degrade this (sharp) slide with the forward model, restore it, and "
        "report PSNR/SSIM/PCC against the original next to classical baselines",
    )
    reference_slide_id: Id | None = Field(
        default=None,
        description="a rescan of the same tissue (slow or in focus): PSNR, SSIM and PCC of "
        "input and output against it, after registering the two",
    )
    min_confidence: float = Field(
        default=0.6, ge=0.0, le=1.0, description="blur below this confidence is left alone"
    )
    mpp: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="microns per level-0 pixel, for a slide whose file gives none or a wrong "
        "one: the output's physical scale and the hooks' sizes use it",
    )
    region: list[int] | None = Field(
        default=None,
        min_length=4,
        max_length=4,
        description="[x, y, width, height] in level-0 pixels; default the whole slide",
    )
    tile_px: int | None = Field(default=None, description="core tile size; default the model's")
    overlap_px: int | None = Field(
        default=None,
        description="no longer used: must be 0 or absent (tiles abut; each model sees its halo)",
    )
    skip_background: bool = Field(default=True, description="copy background tiles through")
    hooks: list[str] = Field(
        default_factory=list,
        description="downstream analyses run on the input and the output of every tissue tile "
        "(GET /v1/hooks lists them), e.g. ['nuclei-count']",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="the client's own fields (accession number, specimen id, stain...), stored "
        "as given and carried into every webhook event",
    )

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON")
        return value

    @model_validator(mode="after")
    def _one_input(self) -> JobCreate:
        if (self.slide_id is None) == (self.sequence_id is None):
            raise ValueError("give either slide_id or sequence_id")
        return self


class HookState(BaseModel):
    """One hook of a job: pending until the job finishes, then completed or failed."""

    state: Literal["pending", "completed", "failed"]
    result: dict[str, Any] | None = Field(description="the hook's result_schema, once done")
    error: str | None
    centroids_url: str | None = Field(
        default=None, description="the points it found on the output, as GeoJSON (QuPath)"
    )


class HookPublic(BaseModel):
    """An installed hook."""

    name: str
    version: str
    result_schema: dict[str, Any]


class Progress(BaseModel):
    """How far a job has come."""

    tiles_done: int
    tiles_total: int
    regions_done: int
    regions_total: int
    blocks_done: int = Field(description="blur-classification blocks done")
    blocks_total: int
    fraction: float


class JobPublic(BaseModel):
    """A job's state, progress and outputs."""

    id: str
    slide_id: str | None
    sequence_id: str | None
    model: str | list[str]
    state: str
    progress: Progress
    eta_s: float | None
    params: dict[str, Any]
    timings: dict[str, float]
    error: str | None
    provider: str | None
    model_sha256: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    metrics: dict[str, Any] | None = Field(description="what the job found and did, once done")
    output_url: str | None
    dzi_url: str | None
    tiles_url: str | None = Field(description="per-tile table (CSV), once done")
    tiles_parquet_url: str | None = Field(description="the same table as Parquet, once done")
    blur_map_url: str | None = Field(description="blur map as an RGBA PNG, one pixel per cell")
    report_url: str | None = Field(description="one-page HTML report, once done")
    viewer_url: str
    hooks: dict[str, HookState] = Field(description="each requested hook's state and result")
    metadata: dict[str, Any] = Field(description="the client's metadata, as given")
    input_dzi_url: str | None = Field(
        default=None,
        description="Deep Zoom of the input: the slide, a sequence's registered mosaic, or "
        "frame 0 of a laser-scan sequence; null once that slide or sequence was deleted",
    )
    frames_total: int | None = Field(
        default=None, description="frames on the output's time axis (laser-scan sequences)"
    )
    frames_url: str | None = Field(
        default=None, description="per-frame table (CSV) of a laser-scan job, once done"
    )
    output_deleted_at: float | None = Field(
        default=None,
        description="when the job's files were deleted (DELETE .../output or the retention); "
        "its output links are null from then on",
    )


class WebhookCreate(BaseModel):
    """A receiver of job events."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="http(s) URL that receives the events")
    secret: str = Field(
        min_length=16, max_length=512, description="key of the HMAC-SHA256 body signature"
    )
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(get_args(WebhookEvent)),
        min_length=1,
        description="the events to receive (default all)",
    )


class WebhookPublic(BaseModel):
    """A registered receiver (its secret is never shown again)."""

    id: str
    url: str
    events: list[str]
    created_at: float


class DeliveryPublic(BaseModel):
    """One attempt to deliver one event."""

    event_id: str = Field(description="the same on every retry of one event")
    event_type: str
    attempt: int
    status_code: int | None
    error: str | None
    delivered: bool
    next_attempt_in_s: float | None = Field(description="when it will be retried, if it will")
    duration_ms: float
    at: float


Scope = Literal["read", "submit", "admin"]


class KeyCreate(BaseModel):
    """A new API key of the caller's tenant."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="who or what uses it")
    scopes: list[Scope] = Field(
        min_length=1, description="read (GET), submit (also POST and DELETE), admin (also keys)"
    )
    expires_in_days: float | None = Field(
        default=None, gt=0, le=36500, description="none: the key does not expire"
    )


class KeyPublic(BaseModel):
    """An API key as listed: never its secret or hash."""

    id: str
    tenant: str
    name: str
    scopes: list[str]
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None


class AuditEvent(BaseModel):
    """One audit event: who (key id, ``oidc:<subject>``, ``system``) did what to which object."""

    id: int
    at: float
    actor: str
    tenant: str | None
    action: str
    object_id: str | None
    detail: str | None


class KeyCreated(KeyPublic):
    """A key just created: ``key`` is shown this once (only its hash is stored)."""

    key: str = Field(description="send as X-API-Key or Authorization: Bearer")


class ModelPublic(BaseModel):
    """An installed model, as its manifest describes it."""

    name: str
    version: str
    task: str
    kind: str
    scale: int
    tile_px: int
    halo_px: int
    min_size_px: int
    in_channels: int
    out_channels: int
    sha256: str
    description: str
    metrics: dict[str, Any]
    throughput_mpx_per_s: float | None


class ErrorBody(BaseModel):
    """Every error response."""

    code: str = Field(description="not_found, invalid_input, invalid_request, conflict...")
    message: str = Field(description="what is wrong, in words for the user")
    detail: list[dict[str, Any]] | None = Field(
        default=None, description="invalid_request only: each field's problem"
    )


class ExportPending(BaseModel):
    """An export that is being written: retry after ``Retry-After`` seconds."""

    state: Literal["exporting"]
    message: str
