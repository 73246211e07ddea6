"""Stream a multipart upload straight to disk, hashing it on the way (never held in memory)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from python_multipart.exceptions import ParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from workers.errors import InvalidInput, RestoreError, TooLarge

FILE_FIELD = "file"
MAX_FIELD_BYTES = 65536


@dataclass
class StoredUpload:
    """A file received from a client."""

    path: Path
    filename: str
    sha256: str
    size_bytes: int
    fields: dict[str, str]  # the form's other (small, text) fields


def safe_filename(name: str) -> str:
    """A client's file name reduced to a safe base name."""
    base = re.split(r"[\\/]", name)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "slide"
    return cleaned[:200]


def stored_name(filename: str) -> str:
    """The name an upload is kept under: ``upload`` and the client's extension.

    Never the client's name (often an accession number or a patient's name); readers that
    tell formats by extension (NDPI, MRXS, VMS) still can.
    """
    lower = filename.lower()
    for double in (".ome.tiff", ".ome.tif"):
        if lower.endswith(double):
            return f"upload{double}"
    suffix = Path(lower).suffix
    return f"upload{suffix}" if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else "upload"


@asynccontextmanager
async def received_upload(
    request: Request, folder: Path, upload_dir: Path, max_bytes: int
) -> AsyncIterator[StoredUpload]:
    """The request's ``file`` written into ``upload_dir``, for the block to check and use.

    If receiving or the block fails, ``folder`` (the slide's or sequence's) is removed, so
    nothing of a refused upload stays, and errors name the file as the client named it.
    """
    upload_dir.mkdir(parents=True)
    upload: StoredUpload | None = None
    try:
        upload = await receive_upload(request, upload_dir, max_bytes)
        yield upload
    except RestoreError as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise in_client_terms(error, upload) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def in_client_terms(error: RestoreError, upload: StoredUpload | None) -> RestoreError:
    """``error`` naming the upload as the client named it, not as it is stored."""
    if upload is not None:
        error.message = error.message.replace(upload.path.name, upload.filename)
        error.args = (error.message,)
    return error


class _FileSink:
    """Multipart callbacks that write the ``file`` field to a folder (None: hash it only)."""

    def __init__(self, directory: Path | None, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.digest = hashlib.sha256()
        self.size = 0
        self.path: Path | None = None
        self.filename = ""
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._handle: IO[bytes] | None = None
        self.fields: dict[str, bytearray] = {}
        self._text: bytearray | None = None

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field = data[start:end].lower()

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._headers[self._field] = self._headers.get(self._field, b"") + data[start:end]

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if name == FILE_FIELD and filename is not None and self.path is None:
            self.filename = safe_filename(filename.decode("utf-8", "replace"))
            self.path = (self.directory or Path()) / stored_name(self.filename)
            self._handle = (self.path if self.directory else Path(os.devnull)).open("wb")
        elif filename is None and name:
            self._text = self.fields.setdefault(name, bytearray())

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._text is not None:
            self._text += data[start:end]
            if len(self._text) > MAX_FIELD_BYTES:
                raise TooLarge(f"a form field may hold at most {MAX_FIELD_BYTES} bytes")
        if self._handle is None:
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise TooLarge(f"upload exceeds the limit of {self.max_bytes} bytes")
        self.digest.update(chunk)
        self._handle.write(chunk)

    def _part_end(self) -> None:
        self._text = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def close(self) -> None:
        self._part_end()


async def receive_upload(request: Request, directory: Path | None, max_bytes: int) -> StoredUpload:
    """Write the multipart field ``file`` of a request into ``directory``.

    With ``directory`` None nothing is kept: the form is read only to be hashed.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidInput("send the file as multipart/form-data with a field named 'file'")
    declared = int(request.headers.get("content-length") or 0)
    if declared > max_bytes + 1_000_000:
        raise TooLarge(f"upload exceeds the limit of {max_bytes} bytes")
    sink = _FileSink(directory, max_bytes)
    parser = MultipartParser(boundary, sink.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            await run_in_threadpool(parser.write, chunk)
        parser.finalize()
    except ParseError:
        raise InvalidInput("the body is not a well-formed multipart/form-data form") from None
    finally:
        sink.close()
    if sink.path is None:
        raise InvalidInput("the form has no file field named 'file'")
    if sink.size == 0:
        raise InvalidInput("the uploaded file is empty")
    fields = {name: bytes(value).decode("utf-8", "replace") for name, value in sink.fields.items()}
    return StoredUpload(sink.path, sink.filename, sink.digest.hexdigest(), sink.size, fields)


def form_sha256(upload: StoredUpload) -> str:
    """One hash of a whole form: the file's content and name, and every other field."""
    form = [upload.sha256, upload.filename, upload.fields]
    return hashlib.sha256(json.dumps(form, sort_keys=True).encode()).hexdigest()
