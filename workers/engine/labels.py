"""NGFF 0.4 label images beside the restored image: the blur map and what ran where.

Each label is a one-level multiscale image of cells (``c, y, x`` with one channel, as the
image's axes) whose scale is the cell size times the image's level-0 scale, listed in
``labels/.zattrs`` and described by ``image-label`` colours and names.
"""

from __future__ import annotations

from pathlib import Path

import numcodecs
import numpy as np
import zarr

from workers.engine.omezarr import NGFF_VERSION, cyx_axes


def write_label(
    image: Path,
    name: str,
    values: np.ndarray,
    cell_scale: tuple[float, float],
    unit: str | None,
    names: list[str],
    colours: list[tuple[int, int, int, int]],
    dtype: str = "uint8",
) -> None:
    """Write ``labels/<name>`` (cells of ``dtype``) and add it to ``labels/.zattrs``.

    ``names`` and ``colours`` describe the values 0, 1, ... (a count label lists only 0).
    """
    root = zarr.open_group(str(image), mode="a", zarr_format=2)
    labels = root.require_group("labels")
    group = labels.require_group(name)
    array = group.create_array(
        name="0",
        shape=(1, *values.shape),
        chunks=(1, *(min(s, 1024) for s in values.shape)),
        dtype=dtype,
        fill_value=0,
        compressors=numcodecs.Blosc(cname="zstd", clevel=3),
        chunk_key_encoding={"name": "v2", "separator": "/"},
        overwrite=True,
    )
    array[0] = values.astype(dtype)
    group.attrs.update(
        {
            "multiscales": [
                {
                    "version": NGFF_VERSION,
                    "name": name,
                    "axes": cyx_axes(unit),
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [1.0, *cell_scale]}
                            ],
                        }
                    ],
                }
            ],
            "image-label": {
                "version": NGFF_VERSION,
                "colors": [
                    {"label-value": value, "rgba": list(rgba)} for value, rgba in enumerate(colours)
                ],
                "properties": [
                    {"label-value": value, "name": label} for value, label in enumerate(names)
                ],
                "source": {"image": "../../"},
            },
        }
    )
    listed = [str(n) for n in labels.attrs.get("labels", [])]  # type: ignore[union-attr]
    labels.attrs["labels"] = [*listed, name] if name not in listed else listed


def read_label(image: Path, name: str) -> np.ndarray:
    """The cells of a label image as (rows, cols)."""
    array = zarr.open_array(str(image / "labels" / name / "0"), mode="r", zarr_format=2)
    return np.asarray(array[0])
