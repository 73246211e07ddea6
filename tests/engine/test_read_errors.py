import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.fixtures import tissue_image
from workers.engine.read_errors import explain, tiff_truncation, without_paths
from workers.engine.readers import open_slide
from workers.errors import InvalidInput, TooLarge
from workers.sandbox import inspect_upload

LIMITS = (2**32, 10**8)


def test_paths_are_reduced_to_file_names() -> None:
    text = "Reading /var/lib/restore/slides/ab/upload/x.dcm: Short read of file /tmp/t.svs: 3 < 9"
    assert without_paths(text) == "Reading x.dcm: Short read of file t.svs: 3 < 9"
    assert without_paths("level 2/3 at 1/2 size") == "level 2/3 at 1/2 size"


def _tiffs(folder: Path) -> list[Path]:
    image = tissue_image(300, 400)
    tifffile.imwrite(folder / "strips.tif", image, photometric="rgb")
    tifffile.imwrite(folder / "big.tif", image, bigtiff=True, tile=(64, 64), compression="zlib")
    with tifffile.TiffWriter(folder / "sub.ome.tif", ome=True) as tif:
        tif.write(image, subifds=1, photometric="rgb", tile=(128, 128))
        tif.write(image[::2, ::2], subfiletype=1, photometric="rgb", tile=(128, 128))
    return [folder / "strips.tif", folder / "big.tif", folder / "sub.ome.tif"]


def test_complete_tiffs_are_not_called_truncated(tmp_path: Path, pyramid_tiff: Path) -> None:
    for path in [pyramid_tiff, *_tiffs(tmp_path)]:
        assert tiff_truncation(path) is None, path.name


@pytest.mark.parametrize("fraction", [0.001, 0.3, 0.9, 0.999])
def test_a_cut_tiff_is_called_truncated_in_plain_words(
    tmp_path: Path, pyramid_tiff: Path, fraction: float
) -> None:
    for whole in [pyramid_tiff, *_tiffs(tmp_path)]:
        data = whole.read_bytes()
        cut = tmp_path / "upload" / f"t{whole.suffix}"
        cut.parent.mkdir(exist_ok=True)
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(InvalidInput, match=r"is truncated or damaged: it ends at byte") as e:
            inspect_upload(str(cut), str(tmp_path), LIMITS, 10**9)
        assert e.value.message.startswith(cut.name) and "/" not in e.value.message


def test_a_header_pointing_past_the_end_is_truncation_not_an_index_error(tmp_path: Path) -> None:
    path = tmp_path / "t.svs"
    path.write_bytes(b"II*\x00" + struct.pack("<I", 10**6) + bytes(100))
    with pytest.raises(InvalidInput, match="before the data its header points to") as e:
        open_slide(path)
    assert "index" not in e.value.message


def test_the_real_svs_cut_short(tmp_path: Path, small_svs: Path) -> None:
    data = small_svs.read_bytes()
    for fraction in (0.5, 0.9):
        (tmp_path / "t.svs").write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(InvalidInput, match=r"t\.svs is truncated or damaged"):
            inspect_upload(str(tmp_path / "t.svs"), str(tmp_path), LIMITS, 10**9)


def test_library_errors_become_domain_errors_without_paths(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG")
    error = explain(path, IndexError("list index out of range"))
    assert isinstance(error, InvalidInput)
    assert error.message.startswith("x.png is damaged") and "IndexError" in error.message
    error = explain(path, OSError(f"image file is truncated: {path}"))
    assert "x.png is truncated or damaged" in error.message and str(tmp_path) not in error.message
    assert isinstance(explain(path, MemoryError()), TooLarge)


def test_a_complete_upload_still_passes_the_check(tmp_path: Path) -> None:
    image = np.asarray(tissue_image(200, 300))
    tifffile.imwrite(tmp_path / "ok.tif", image, photometric="rgb", tile=(64, 64))
    inspected = inspect_upload(str(tmp_path / "ok.tif"), str(tmp_path), LIMITS, 10**9)
    assert inspected["info"]["width"] == 300
