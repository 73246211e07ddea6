"""Frame sequences from scanning microscopes: upload with acquisition metadata, describe."""

from __future__ import annotations

import shutil
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from pydantic import ValidationError

from app import deepzoom, idempotency
from app.auth import CallerDep
from app.deps import Services, services
from app.idempotency import Completer, IdempotencyKey
from app.openapi import BINARY, errors, file, multipart
from app.schemas import SequencePublic
from app.uploads import received_upload
from workers import sandbox
from workers.engine.frames import read_frame
from workers.engine.readers import ArrayReader, to_rgb_uint8
from workers.errors import InvalidInput, NotFound
from workers.input_deletion import delete_input
from workers.layout import sequence_paths
from workers.sequence_metadata import SequenceMetadata, check_frames
from workers.store import new_id

router = APIRouter(prefix="/v1/sequences", tags=["sequences"])
ROUTE = f"POST {router.prefix}"
METADATA_FIELD = "metadata"
UPLOAD_FORM = multipart(
    {
        "file": {**BINARY, "description": "multi-page TIFF, zip of images, or video"},
        METADATA_FIELD: {
            "type": "string",
            "description": "the acquisition as JSON: mode ('continuous-stage' or 'laser-scan'), "
            "pixel_size_um, and the mode's fields (README: frame sequences)",
        },
    },
    required=["file", METADATA_FIELD],
)
Svc = Annotated[Services, Depends(services)]


def sequence_public(record: dict[str, Any]) -> SequencePublic:
    """The API view of a sequence record."""
    info, meta = record["info"], SequenceMetadata.model_validate(record["metadata"])
    step = meta.step_px
    nominal_step = None
    if step is not None:
        nominal_step = [step, 0.0] if meta.scan_axis == "x" else [0.0, step]
    return SequencePublic(
        id=record["id"],
        filename=record["filename"],
        sha256=record["sha256"],
        size_bytes=record["size_bytes"],
        created_at=record["created_at"],
        mode=meta.mode,
        frame_count=info["count"],
        frame_width=info["width"],
        frame_height=info["height"],
        channels=info["channels"],
        source_dtype=info["source_dtype"],
        container=info["container"],
        container_rate_hz=info["rate_hz"],
        motion_blur_px=meta.motion_blur_px,
        nominal_step_px=nominal_step,
        frame_interval_s=meta.frame_interval_s,
        metadata=record["metadata"],
        thumbnail_url=f"/v1/sequences/{record['id']}/thumbnail",
    )


def parse_metadata(text: str | None) -> SequenceMetadata:
    """The form's ``metadata`` field, or a 422 that names each missing or wrong field."""
    if text is None:
        raise InvalidInput(
            "the form has no field named 'metadata' (JSON: mode, pixel_size_um, ...)"
        )
    try:
        return SequenceMetadata.model_validate_json(text)
    except ValidationError as error:
        problems = [
            ".".join(["metadata", *(str(p) for p in e["loc"])])
            + ": "
            + ("unknown field" if e["type"] == "extra_forbidden" else e["msg"])
            for e in error.errors()
        ]
        raise InvalidInput("; ".join(problems)) from None


@router.post(
    "",
    status_code=201,
    response_model=SequencePublic,
    responses=errors(409, 413, 415, 422),
    openapi_extra=UPLOAD_FORM,
)
async def upload_sequence(
    request: Request,
    response: Response,
    caller: CallerDep,
    svc: Svc,
    idempotency_key: IdempotencyKey = None,
) -> SequencePublic:
    """Upload frames (multi-page TIFF, zip of images, or video) as ``file`` with ``metadata``.

    With an ``Idempotency-Key``, a retry with the same form gets the sequence the first upload
    created (409 while that upload is still running; 422 for another form).
    """
    sequence_id = new_id()
    return await idempotency.upload_once(
        svc,
        request,
        idempotency.keyed(idempotency_key, f"{ROUTE} {caller.tenant}"),
        sequence_id,
        response,
        lambda complete: _receive_sequence(request, svc, sequence_id, caller.tenant, complete),
        lambda earlier: sequence_public(svc.store.get_sequence(earlier, caller.tenant)),
    )


async def _receive_sequence(
    request: Request, svc: Services, sequence_id: str, tenant: str, complete: Completer | None
) -> SequencePublic:
    """Stream the upload to disk, decode its frames in the sandbox, and record the sequence."""
    paths = sequence_paths(svc.settings, sequence_id)
    limit = svc.settings.max_upload_bytes
    async with received_upload(request, paths.root, paths.upload_dir, limit) as upload:
        metadata = parse_metadata(upload.fields.get(METADATA_FIELD))
        info = await run_in_threadpool(
            svc.sandbox.run,
            sandbox.decode_sequence,
            str(upload.path),
            str(paths.root),
            svc.settings.max_sequence_frames,
            svc.settings.max_plain_image_pixels,
            svc.settings.max_pixels_per_byte,
            timeout_s=svc.settings.sequence_decode_timeout_s,
        )
        check_frames(metadata, info["count"], (info["width"], info["height"]))
    shutil.rmtree(paths.upload_dir, ignore_errors=True)
    record = svc.store.add_sequence(
        {
            "id": sequence_id,
            "filename": upload.filename,
            "sha256": upload.sha256,
            "size_bytes": upload.size_bytes,
            "metadata": metadata.model_dump(mode="json", exclude_none=True),
            "info": info,
            "tenant": tenant,
        },
        complete(upload) if complete else None,
    )
    return sequence_public(record)


@router.get("", response_model=list[SequencePublic])
def list_sequences(caller: CallerDep, svc: Svc) -> list[SequencePublic]:
    """The newest frame sequences of the caller's tenant."""
    return [sequence_public(r) for r in svc.store.list_sequences(tenant=caller.tenant)]


@router.get("/{sequence_id}", response_model=SequencePublic, responses=errors(404))
def get_sequence(sequence_id: str, svc: Svc) -> SequencePublic:
    """Frame count and size, motion blur and nominal step of one sequence."""
    return sequence_public(svc.store.get_sequence(sequence_id))


@router.get(
    "/{sequence_id}/thumbnail",
    response_class=Response,
    responses=file("image/png", "PNG of the first frame", 404),
)
def thumbnail(sequence_id: str, svc: Svc) -> FileResponse:
    """PNG of the first frame, reduced."""
    svc.store.get_sequence(sequence_id)
    return FileResponse(sequence_paths(svc.settings, sequence_id).thumbnail, media_type="image/png")


def _frame(svc: Services, sequence_id: str, t: int) -> ArrayReader:
    """Frame ``t`` of a sequence as a one-level image."""
    record = svc.store.get_sequence(sequence_id)
    if not 0 <= t < record["info"]["count"]:
        raise NotFound(f"sequence {sequence_id} has frames 0 to {record['info']['count'] - 1}")
    pixels = read_frame(sequence_paths(svc.settings, sequence_id).frames, t)
    return ArrayReader(to_rgb_uint8(pixels), record["metadata"]["pixel_size_um"])


@router.get(
    "/{sequence_id}/frames/{t}/image.dzi",
    response_class=Response,
    responses=file("application/xml", "the Deep Zoom descriptor", 404, 422),
)
def frame_dzi(sequence_id: str, t: int, svc: Svc) -> Response:
    """Deep Zoom descriptor of one input frame."""
    return deepzoom.descriptor(_frame(svc, sequence_id, t))


@router.get(
    "/{sequence_id}/frames/{t}/image_files/{level}/{col}_{row}.jpeg",
    response_class=Response,
    responses=file("image/jpeg", "one Deep Zoom tile", 404, 422),
)
def frame_tile(sequence_id: str, t: int, level: int, col: int, row: int, svc: Svc) -> Response:
    """One Deep Zoom tile of one input frame."""
    return deepzoom.tile(_frame(svc, sequence_id, t), level, col, row)


@router.delete("/{sequence_id}", status_code=204, responses=errors(404, 409))
def delete_sequence(sequence_id: str, svc: Svc) -> Response:
    """Delete a sequence and its files; ``RESTORE_INPUT_DELETION`` decides about outputs."""
    svc.store.get_sequence(sequence_id)
    delete_input(svc.store, svc.settings, "sequence", sequence_id)
    return Response(status_code=204)
