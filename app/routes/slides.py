"""Slides: upload, describe, thumbnail and Deep Zoom tiles of the input."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from app import idempotency
from app.auth import CallerDep
from app.deps import Services, services
from app.idempotency import Completer, IdempotencyKey
from app.openapi import BINARY, errors, file, multipart
from app.schemas import SlidePublic
from app.uploads import received_upload
from workers import sandbox
from workers.engine.dzi import DeepZoom
from workers.errors import InvalidInput, TooLarge
from workers.input_deletion import delete_input
from workers.layout import slide_paths
from workers.store import new_id

router = APIRouter(prefix="/v1/slides", tags=["slides"])
ROUTE = f"POST {router.prefix}"
UPLOAD_FORM = multipart(
    {
        "file": {**BINARY, "description": "the slide (or a zip of a multi-file slide)"},
        "mpp": {
            "type": "string",
            "description": "microns per pixel, for a file that gives none or a wrong one",
        },
    },
    required=["file"],
)
MPP_FIELD, MAX_GIVEN_MPP = "mpp", 1000.0
MAX_THUMBNAIL_PX = 2048
Svc = Annotated[Services, Depends(services)]


def slide_public(record: dict[str, Any]) -> SlidePublic:
    """The API view of a slide record."""
    info = record["info"]
    return SlidePublic(
        id=record["id"],
        filename=record["filename"],
        sha256=record["sha256"],
        size_bytes=record["size_bytes"],
        created_at=record["created_at"],
        width=info["width"],
        height=info["height"],
        level_count=info["level_count"],
        level_dimensions=info["level_dimensions"],
        level_downsamples=info["level_downsamples"],
        mpp_x=info["mpp_x"],
        mpp_y=info["mpp_y"],
        mpp_source=info.get("mpp_source", "file" if info["mpp_x"] else None),
        vendor=info["vendor"],
        reader=info["reader"],
        channels=info.get("channels") or [],
        thumbnail_url=f"/v1/slides/{record['id']}/thumbnail",
        dzi_url=f"/v1/slides/{record['id']}/image.dzi",
    )


def _with_mpp(info: dict[str, Any], given: str | None) -> dict[str, Any]:
    """The slide's description with its pixel size: the form's ``mpp``, else the file's."""
    if given is None or not given.strip():
        return {**info, "mpp_source": "file" if info["mpp_x"] else None}
    try:
        mpp = float(given)
    except ValueError:
        mpp = math.nan
    if not 0 < mpp <= MAX_GIVEN_MPP:
        raise InvalidInput(f"mpp must be microns per pixel, above 0 and at most {MAX_GIVEN_MPP}")
    return {**info, "mpp_x": mpp, "mpp_y": mpp, "mpp_source": "upload"}


@router.post(
    "",
    status_code=201,
    response_model=SlidePublic,
    responses=errors(409, 413, 415, 422),
    openapi_extra=UPLOAD_FORM,
)
async def upload_slide(
    request: Request,
    response: Response,
    caller: CallerDep,
    svc: Svc,
    idempotency_key: IdempotencyKey = None,
) -> SlidePublic:
    """Upload a slide as multipart field ``file`` (optional field ``mpp``: microns per pixel).

    The file is checked in a sandboxed reader. With an ``Idempotency-Key``, a retry with the
    same form gets the slide the first upload created (409 while that upload is still
    running; 422 for another form).
    """
    slide_id = new_id()
    return await idempotency.upload_once(
        svc,
        request,
        idempotency.keyed(idempotency_key, f"{ROUTE} {caller.tenant}"),
        slide_id,
        response,
        lambda complete: _receive_slide(request, svc, slide_id, caller.tenant, complete),
        lambda earlier: slide_public(svc.store.get_slide(earlier, caller.tenant)),
    )


async def _receive_slide(
    request: Request, svc: Services, slide_id: str, tenant: str, complete: Completer | None
) -> SlidePublic:
    """Stream the upload to disk, inspect it in the sandbox, and record the slide."""
    paths = slide_paths(svc.settings, slide_id)
    limit = svc.settings.max_upload_bytes
    async with received_upload(request, paths.root, paths.upload_dir, limit) as upload:
        inspected = await run_in_threadpool(
            svc.sandbox.run,
            sandbox.inspect_upload,
            str(upload.path),
            str(paths.root),
            svc.reader_limits,
            svc.settings.max_unpacked_bytes,
            svc.settings.max_zip_ratio,
        )
        info = _with_mpp(inspected["info"], upload.fields.get(MPP_FIELD))
    record = svc.store.add_slide(
        {
            "id": slide_id,
            "filename": upload.filename,
            "sha256": upload.sha256,
            "size_bytes": upload.size_bytes,
            "path": inspected["path"],
            "info": info,
            "tenant": tenant,
        },
        complete(upload) if complete else None,
    )
    return slide_public(record)


@router.get("", response_model=list[SlidePublic])
def list_slides(caller: CallerDep, svc: Svc) -> list[SlidePublic]:
    """The newest slides of the caller's tenant."""
    return [slide_public(r) for r in svc.store.list_slides(tenant=caller.tenant)]


@router.get("/{slide_id}", response_model=SlidePublic, responses=errors(404))
def get_slide(slide_id: str, svc: Svc) -> SlidePublic:
    """One slide's dimensions, levels, pixel size and vendor."""
    return slide_public(svc.store.get_slide(slide_id))


@router.get(
    "/{slide_id}/thumbnail",
    response_class=Response,
    responses=file("image/png", "the thumbnail", 404, 413, 415, 422),
)
def thumbnail(
    slide_id: str, svc: Svc, max_px: Annotated[int | None, Query(ge=16)] = None
) -> Response:
    """PNG thumbnail; ``max_px`` up to 2048 renders a new one in the sandbox."""
    record = svc.store.get_slide(slide_id)
    if max_px is None:
        return FileResponse(slide_paths(svc.settings, slide_id).thumbnail, media_type="image/png")
    if max_px > MAX_THUMBNAIL_PX:
        raise TooLarge(f"max_px may be at most {MAX_THUMBNAIL_PX}")
    png = svc.sandbox.run(sandbox.render_thumbnail, record["path"], svc.reader_limits, max_px)
    return Response(png, media_type="image/png")


@router.get(
    "/{slide_id}/image.dzi",
    response_class=Response,
    responses=file("application/xml", "the Deep Zoom descriptor", 404),
)
def input_dzi(slide_id: str, svc: Svc) -> Response:
    """Deep Zoom descriptor of the input slide."""
    info = svc.store.get_slide(slide_id)["info"]
    return Response(DeepZoom(info["width"], info["height"]).xml(), media_type="application/xml")


@router.get(
    "/{slide_id}/image_files/{level}/{col}_{row}.jpeg",
    response_class=Response,
    responses=file("image/jpeg", "one Deep Zoom tile", 404, 413, 415, 422),
)
def input_tile(slide_id: str, level: int, col: int, row: int, svc: Svc) -> Response:
    """One Deep Zoom tile of the input, read in the sandbox."""
    record = svc.store.get_slide(slide_id)
    jpeg = svc.sandbox.run(
        sandbox.render_input_tile, record["path"], svc.reader_limits, level, col, row
    )
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@router.delete("/{slide_id}", status_code=204, responses=errors(404, 409))
def delete_slide(slide_id: str, svc: Svc) -> Response:
    """Delete a slide and its files; ``RESTORE_INPUT_DELETION`` decides about outputs."""
    svc.store.get_slide(slide_id)
    delete_input(svc.store, svc.settings, "slide", slide_id)
    return Response(status_code=204)
