"""DICOM whole-slide images (VL Whole Slide Microscopy), written here with pydicom."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from skimage import data

from workers.engine.archives import unpack_slide_zip
from workers.engine.dicom import WSI_SOP_CLASS, is_whole_slide, sop_class_uid
from workers.engine.readers import open_slide
from workers.errors import InvalidInput, UnsupportedFormat
from workers.sandbox import inspect_upload

CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
BASE_TYPE = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
RESAMPLED_TYPE = ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]


def dicom_tissue() -> np.ndarray:
    """Real IHC tissue (scikit-image), mirrored to 768 x 1024 (rows, cols)."""
    tissue = data.immunohistochemistry()
    row = np.concatenate([tissue, tissue[:, ::-1]], axis=1)
    return np.ascontiguousarray(np.concatenate([row, row[::-1]], axis=0)[:768])


def _frames(pixels: np.ndarray, tile_px: int, jpeg: bool) -> list[bytes]:
    """TILED_FULL frames, row by row, edge tiles padded with white."""
    frames = []
    for top in range(0, pixels.shape[0], tile_px):
        for left in range(0, pixels.shape[1], tile_px):
            tile = np.full((tile_px, tile_px, 3), 255, np.uint8)
            part = pixels[top : top + tile_px, left : left + tile_px]
            tile[: part.shape[0], : part.shape[1]] = part
            if jpeg:
                encoded = io.BytesIO()
                Image.fromarray(tile).save(encoded, "JPEG", quality=95, subsampling=1)
                frames.append(encoded.getvalue())
            else:
                frames.append(tile.tobytes())
    return frames


def dicom_instance(
    pixels: np.ndarray,
    series_uid: str,
    mpp: float,
    *,
    jpeg: bool = True,
    tile_px: int = 256,
    image_type: list[str] | None = None,
    sop_class: str = WSI_SOP_CLASS,
) -> Dataset:
    """One instance (one pyramid level) of a DICOM-WSI series, with what readers need."""
    rows, cols = pixels.shape[:2]
    frames = _frames(pixels, tile_px, jpeg)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = ds.FrameOfReferenceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "SM"
    ds.ImageType = image_type or BASE_TYPE
    ds.Rows = ds.Columns = tile_px
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = cols, rows
    ds.TotalPixelMatrixFocalPlanes = ds.NumberOfOpticalPaths = 1
    ds.NumberOfFrames = len(frames)
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.PhotometricInterpretation = "YBR_FULL_422" if jpeg else "RGB"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = cols * mpp / 1000, rows * mpp / 1000
    measures = Dataset()
    measures.PixelSpacing = [mpp / 1000, mpp / 1000]  # mm: rows, then columns
    measures.SliceThickness = 0.001
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    optical_path = Dataset()
    optical_path.OpticalPathIdentifier = "1"
    ds.OpticalPathSequence = [optical_path]
    ds.LossyImageCompression = "01" if jpeg else "00"
    if jpeg:
        ds.PixelData = encapsulate(frames, has_bot=True)
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = b"".join(frames)
    return ds


def write_dicom_series(
    folder: Path, image: np.ndarray, levels: int = 2, mpp: float = 0.25, jpeg: bool = True
) -> list[Path]:
    """The pyramid of ``image`` as a DICOM-WSI series, one file per level (base first)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    paths = []
    for level in range(levels):
        step = 2**level
        ds = dicom_instance(
            image[::step, ::step],
            series_uid,
            mpp * step,
            jpeg=jpeg,
            image_type=BASE_TYPE if level == 0 else RESAMPLED_TYPE,
        )
        paths.append(folder / f"level{level}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def zip_series(files: list[Path], archive: Path) -> Path:
    """A zip of a series as PACS exports come: nested folder, names without extension."""
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("export/README.txt", "exported series")
        for index, path in enumerate(files):
            bundle.write(path, f"export/series1/IM{index + 1:05d}")
    return archive


def assert_close(actual: np.ndarray, expected: np.ndarray, jpeg: bool) -> None:
    assert actual.shape == expected.shape
    difference = np.abs(actual.astype(float) - expected.astype(float))
    if jpeg:
        assert difference.mean() < 3 and np.percentile(difference, 99) < 20
    else:
        assert difference.max() == 0


@pytest.mark.parametrize("jpeg", [False, True], ids=["uncompressed", "jpeg"])
def test_a_single_instance_opens_as_a_one_level_slide(tmp_path: Path, jpeg: bool) -> None:
    image = dicom_tissue()
    (path,) = write_dicom_series(tmp_path / "upload", image, levels=1, jpeg=jpeg)
    assert is_whole_slide(path) and sop_class_uid(path) == WSI_SOP_CLASS
    reader = open_slide(path)
    info = reader.info
    assert (info.width, info.height, info.level_count) == (1024, 768, 1)
    assert info.vendor == "dicom" and info.reader == "openslide"
    assert info.mpp_x == pytest.approx(0.25) and info.mpp_y == pytest.approx(0.25)
    assert_close(reader.read_region((0, 0), 0, (1024, 768)), image, jpeg)
    assert_close(reader.read_region((700, 500), 0, (300, 250)), image[500:750, 700:1000], jpeg)


def test_a_zipped_series_unpacks_and_opens_every_level(tmp_path: Path) -> None:
    image = dicom_tissue()
    archive = zip_series(write_dicom_series(tmp_path / "made", image), tmp_path / "case.zip")
    path = unpack_slide_zip(archive, tmp_path / "unpacked", max_bytes=10**8)
    assert path.name == "IM00001"  # the base level, the largest instance
    reader = open_slide(path)
    info = reader.info
    assert info.level_dimensions == [(1024, 768), (512, 384)]
    assert info.level_downsamples == pytest.approx([1.0, 2.0])
    assert info.vendor == "dicom" and info.mpp_x == pytest.approx(0.25)
    assert_close(reader.read_region((0, 0), 0, (1024, 768)), image, jpeg=True)
    assert_close(reader.read_region((0, 0), 1, (512, 384)), image[::2, ::2], jpeg=True)


def test_the_upload_inspection_describes_a_zipped_series(tmp_path: Path) -> None:
    archive = zip_series(write_dicom_series(tmp_path / "made", dicom_tissue()), tmp_path / "s.zip")
    inspected = inspect_upload(str(archive), str(tmp_path), (2**32, 10**8), 10**9)
    assert inspected["info"]["vendor"] == "dicom" and inspected["info"]["level_count"] == 2
    assert (tmp_path / "thumbnail.png").is_file()


def test_a_dicom_that_is_not_a_slide_is_unsupported_with_a_reason(tmp_path: Path) -> None:
    ds = dicom_instance(dicom_tissue()[:256, :256], generate_uid(), 0.25, sop_class=CT_SOP_CLASS)
    ds.save_as(tmp_path / "scan.dcm", enforce_file_format=True)
    with pytest.raises(
        UnsupportedFormat, match=r"scan\.dcm is a DICOM file of CT, not a whole"
    ) as e:
        open_slide(tmp_path / "scan.dcm")
    assert str(tmp_path) not in e.value.message


def test_a_zip_of_other_dicom_files_is_unsupported(tmp_path: Path) -> None:
    ds = dicom_instance(dicom_tissue()[:256, :256], generate_uid(), 0.25, sop_class=CT_SOP_CLASS)
    ds.save_as(tmp_path / "scan.dcm", enforce_file_format=True)
    with zipfile.ZipFile(tmp_path / "ct.zip", "w") as bundle:
        bundle.write(tmp_path / "scan.dcm", "IM0001")
    with pytest.raises(UnsupportedFormat, match=r"ct\.zip holds no slide .* DICOM"):
        unpack_slide_zip(tmp_path / "ct.zip", tmp_path / "out", max_bytes=10**8)


def test_a_slide_dicom_openslide_refuses_says_why_without_the_server_path(tmp_path: Path) -> None:
    ds = dicom_instance(dicom_tissue(), generate_uid(), 0.25, image_type=["ORIGINAL", "PRIMARY"])
    ds.save_as(tmp_path / "odd.dcm", enforce_file_format=True)
    with pytest.raises(UnsupportedFormat, match=r"odd\.dcm is a DICOM whole-slide image") as e:
        open_slide(tmp_path / "odd.dcm")
    assert "ImageType" in e.value.message and "/" not in e.value.message


def test_a_truncated_dicom_is_refused_in_plain_words(tmp_path: Path) -> None:
    (path,) = write_dicom_series(tmp_path / "made", dicom_tissue(), levels=1)
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "t.dcm").write_bytes(path.read_bytes()[: path.stat().st_size * 3 // 4])
    with pytest.raises(InvalidInput, match=r"t\.dcm is truncated or damaged") as e:
        inspect_upload(str(tmp_path / "cut" / "t.dcm"), str(tmp_path), (2**32, 10**8), 10**9)
    assert str(tmp_path) not in e.value.message
