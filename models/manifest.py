"""The manifest that travels beside every shipped ONNX model.

One contract for every model: input ``image``, float32, NCHW, RGB (or 1 channel where
stated), values in [0, 1]. A generator outputs the same layout with height and width times
``scale``; the classifier outputs ``logits`` [N, 4] (in-focus, defocus, motion, mixed) and
``extent`` [N, 1] in pixels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "manifest.json"
BLUR_CLASSES = ("in_focus", "defocus", "motion", "mixed")

Task = Literal[
    "deblur-motion",
    "deblur-defocus",
    "super-resolution",
    "denoise",
    "blur-classification",
    "identity",
    "convolution",
]


class TrainingRecord(BaseModel):
    """How a model was trained, so anyone can redo it."""

    data: str = Field(description="training images: folders, counts, held-out split")
    command: str = Field(description="the command that trained the model from scratch")
    minutes: float | None = Field(default=None, description="wall-clock training time")
    seed: int | None = None
    hardware: str | None = None


class PsfGraph(BaseModel):
    """A second ONNX graph of the same weights that is told the blur instead of estimating it."""

    file: str = Field(description="ONNX file name beside the manifest")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input_name: str = Field(default="psf", description="the second input, float32 [N, 2]")
    description: str = ""


class ModelManifest(BaseModel):
    """Everything the server needs to know to run a model without importing torch."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    version: str
    task: Task
    kind: Literal["generator", "classifier"] = "generator"
    file: str = Field(default="model.onnx", description="ONNX file name beside the manifest")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    opset: int | None = None
    input_name: str = "image"
    output_names: list[str] = Field(default_factory=lambda: ["image"])
    in_channels: int = 3
    out_channels: int = 3
    scale: int = Field(default=1, ge=1, le=8)
    tile_px: int = Field(
        default=512, ge=16, description="core tile size the server runs (input px)"
    )
    halo_px: int = Field(
        default=16,
        ge=0,
        description="context each side, cropped after: the model's receptive field "
        "(models.receptive_field measures it)",
    )
    size_multiple: int = Field(
        default=1, ge=1, description="input height and width must be multiples of this"
    )
    min_size_px: int = Field(
        default=1, ge=1, description="smaller inputs are mirror-padded up to this side"
    )
    value_range: tuple[float, float] = (0.0, 1.0)
    description: str = ""
    training: TrainingRecord | None = None
    metrics: dict[str, object] = Field(default_factory=dict)
    throughput_mpx_per_s: float | None = Field(
        default=None, description="CPU megapixels per second through ONNX Runtime"
    )
    psf_graph: PsfGraph | None = Field(
        default=None, description="the same model with a known PSF as a second input"
    )


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(path: Path) -> ModelManifest:
    """Read and validate one manifest file."""
    return ModelManifest.model_validate_json(path.read_text())


def write_manifest(manifest: ModelManifest, directory: Path) -> Path:
    """Write ``manifest.json`` into a model directory."""
    path = directory / MANIFEST_NAME
    path.write_text(manifest.model_dump_json(indent=2, exclude_none=True) + "\n")
    return path
