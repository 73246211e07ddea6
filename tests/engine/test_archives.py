"""Zip uploads: bombs refused before writing, bytes counted while writing, whole-file zips only."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from workers.engine.archives import check_whole_file, is_zip_upload, unpack_slide_zip
from workers.errors import InvalidInput, TooLarge

MIB = 2**20


def written_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    bomb = zip_of(tmp_path / "bomb.zip", {"case/slide.svs": bytes(64 * MIB)})
    out = tmp_path / "out"
    with pytest.raises(TooLarge, match=r"expands 1,0\d\d-fold .* a zip bomb"):
        unpack_slide_zip(bomb, out, max_bytes=10 * 2**30)
    print(f"{bomb.stat().st_size:,} B zip of 64 MiB refused; {written_bytes(out)} B written")
    assert written_bytes(out) == 0


def test_a_zip_declaring_more_than_the_limit_is_refused_before_writing(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, 3 * MIB, dtype=np.uint8).tobytes()
    archive = zip_of(tmp_path / "big.zip", {"a.tif": data, "b.tif": data})
    with pytest.raises(TooLarge, match="expands to 6,291,456 bytes, past the limit"):
        unpack_slide_zip(archive, tmp_path / "out", max_bytes=4 * MIB)
    assert written_bytes(tmp_path / "out") == 0


def test_bytes_written_never_pass_the_declared_size(tmp_path: Path) -> None:
    """A member whose headers declare 1 MiB but whose data inflates to 3 MiB."""
    data = np.random.default_rng(1).integers(0, 256, 3 * MIB, dtype=np.uint8).tobytes()
    archive = zip_of(tmp_path / "liar.zip", {"slide.tif": data})
    raw = bytearray(archive.read_bytes())
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        header = raw.index(signature)
        raw[header + size_at : header + size_at + 4] = struct.pack("<I", MIB)
    archive.write_bytes(bytes(raw))
    with pytest.raises(InvalidInput, match="cannot be extracted"):
        unpack_slide_zip(archive, tmp_path / "out", max_bytes=2 * MIB)
    print(f"declared 1 MiB, holds 3 MiB: {written_bytes(tmp_path / 'out'):,} B written")
    assert written_bytes(tmp_path / "out") <= MIB


def test_a_tiff_with_a_zip_appended_is_not_a_zip(tmp_path: Path, pyramid_tiff: Path) -> None:
    inner = zip_of(tmp_path / "inner.zip", {"other.tif": b"II*\x00" + bytes(100)})
    polyglot = tmp_path / "slide.svs"
    polyglot.write_bytes(pyramid_tiff.read_bytes() + inner.read_bytes())
    assert zipfile.is_zipfile(polyglot)  # what the server asked before
    assert not is_zip_upload(polyglot)
    assert is_zip_upload(inner)


def test_a_zip_must_account_for_the_whole_file(tmp_path: Path) -> None:
    plain = zip_of(tmp_path / "plain.zip", {"a.mrxs": b"x" * 100, "a/Data0000.dat": b"y" * 100})
    data = plain.read_bytes()
    with zipfile.ZipFile(plain) as bundle:
        check_whole_file(plain, bundle)
        second = bundle.infolist()[1].header_offset
    appended = tmp_path / "appended.zip"
    appended.write_bytes(data + b"II*\x00" + bytes(5000))
    inserted = tmp_path / "inserted.zip"
    shift = 4096
    inserted.write_bytes(data[:second] + bytes(shift) + data[second:])
    _shift_offsets(inserted, second, shift)
    for path, reason in ((appended, "data after the end"), (inserted, "does not account for")):
        with pytest.raises(InvalidInput, match=reason):
            unpack_slide_zip(path, tmp_path / path.stem, max_bytes=MIB)


def _shift_offsets(path: Path, after: int, shift: int) -> None:
    """Move the central directory's pointers past ``after`` by ``shift`` bytes."""
    raw = bytearray(path.read_bytes())
    entry = raw.index(b"PK\x01\x02")
    while raw[entry : entry + 4] == b"PK\x01\x02":
        (offset,) = struct.unpack_from("<I", raw, entry + 42)
        if offset >= after:
            struct.pack_into("<I", raw, entry + 42, offset + shift)
        names, extra, comment = struct.unpack_from("<HHH", raw, entry + 28)
        entry += 46 + names + extra + comment
    end = raw.rindex(b"PK\x05\x06")
    (directory,) = struct.unpack_from("<I", raw, end + 16)
    struct.pack_into("<I", raw, end + 16, directory + shift)
    path.write_bytes(bytes(raw))


class _Unseekable(io.RawIOBase):
    """A stream zipfile cannot seek in: it writes data descriptors after each member."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, chunk: bytes) -> int:  # type: ignore[override]
        self.data += chunk
        return len(chunk)


def test_zips_from_streaming_tools_with_descriptors_and_a_comment_unpack(tmp_path: Path) -> None:
    stream = _Unseekable()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.comment = b"made by a scanner's export"
        for name in ("case/slide.mrxs", "case/slide/Data0000.dat"):
            with bundle.open(name, "w") as member:
                member.write(np.random.default_rng(2).bytes(70_000))
    archive = tmp_path / "streamed.zip"
    archive.write_bytes(bytes(stream.data))
    with zipfile.ZipFile(archive) as bundle:
        assert all(info.flag_bits & 0x08 for info in bundle.infolist())  # data descriptors
    found = unpack_slide_zip(archive, tmp_path / "out", max_bytes=MIB)
    assert found.name == "slide.mrxs" and written_bytes(tmp_path / "out") == 140_000
