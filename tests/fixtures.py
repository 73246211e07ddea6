"""Test fixtures built by the tests themselves: tiny ONNX graphs and synthetic slides.

The ONNX graphs here are test fixtures only (identity, a known convolution); they are
never shipped as product models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import tifffile
from onnx import TensorProto, helper, numpy_helper

from models.manifest import ModelManifest, file_sha256, write_manifest
from models.registry import get_model
from workers import job_hooks, jobs
from workers.planning import plan_params, requested_models
from workers.sandbox import inspect_upload
from workers.settings import ZOO_DIR, Settings
from workers.store import Store

BLUR_KERNEL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 16.0


def _save(graph: onnx.GraphProto, directory: Path, **manifest: object) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, directory / "model.onnx")
    write_manifest(
        ModelManifest(sha256=file_sha256(directory / "model.onnx"), opset=17, **manifest),  # type: ignore[arg-type]
        directory,
    )
    return directory


def _io(scale: int = 1) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "H", "W"])
    return x, y


def identity_model(root: Path, name: str = "identity", tile_px: int = 128) -> Path:
    """A model whose output is its input."""
    x, y = _io()
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["output"])], name, [x], [y])
    return _save(
        graph,
        root / name,
        name=name,
        version="test",
        task="identity",
        output_names=["output"],
        tile_px=tile_px,
        halo_px=0,
    )


def blur_model(root: Path, name: str = "blur3x3", tile_px: int = 128) -> Path:
    """A depthwise 3x3 binomial blur with zero padding (a known linear convolution)."""
    x, y = _io()
    weights = np.repeat(BLUR_KERNEL[None, None], 3, axis=0)
    conv = helper.make_node("Conv", ["image", "w"], ["output"], group=3, pads=[1, 1, 1, 1])
    graph = helper.make_graph([conv], name, [x], [y], [numpy_helper.from_array(weights, "w")])
    return _save(
        graph,
        root / name,
        name=name,
        version="test",
        task="convolution",
        output_names=["output"],
        tile_px=tile_px,
        halo_px=4,
    )


def blocky_identity_model(root: Path, name: str = "blocky", multiple: int = 8) -> Path:
    """An identity that only accepts sizes divisible by ``multiple`` (like a U-Net)."""
    x, y = _io()
    nodes = [
        helper.make_node("SpaceToDepth", ["image"], ["blocks"], blocksize=multiple),
        helper.make_node("DepthToSpace", ["blocks"], ["output"], blocksize=multiple, mode="DCR"),
    ]
    graph = helper.make_graph(nodes, name, [x], [y])
    return _save(
        graph,
        root / name,
        name=name,
        version="test",
        task="identity",
        output_names=["output"],
        tile_px=64,
        halo_px=0,
        size_multiple=multiple,
    )


def small_input_refusing_model(root: Path, name: str = "needs-64", least: int = 64) -> Path:
    """An identity that returns zeros for inputs under ``least`` px high (like a model whose
    estimator needs context); its manifest asks the runtime to pad up to ``least``."""
    x, y = _io()
    least_t = numpy_helper.from_array(np.array([least], dtype=np.int64), "least")
    nodes = [
        helper.make_node("Shape", ["image"], ["shape"], start=2, end=3),
        helper.make_node("GreaterOrEqual", ["shape", "least"], ["big_enough"]),
        helper.make_node("Cast", ["big_enough"], ["gate"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["image", "gate"], ["output"]),
    ]
    graph = helper.make_graph(nodes, name, [x], [y], [least_t])
    return _save(
        graph,
        root / name,
        name=name,
        version="test",
        task="identity",
        output_names=["output"],
        tile_px=64,
        halo_px=0,
        min_size_px=least,
    )


def grey_doubling_model(root: Path, name: str = "grey-x2") -> Path:
    """A 1-channel model that doubles its input (checks channel folding)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, "h", "w"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 1, "h", "w"])
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["image", "two"], ["output"])], name, [x], [y], [two]
    )
    return _save(
        graph,
        root / name,
        name=name,
        version="test",
        task="denoise",
        output_names=["output"],
        in_channels=1,
        out_channels=1,
        halo_px=0,
    )


def upscale_model(root: Path, name: str = "nearest-x2", tile_px: int = 128) -> Path:
    """A x2 nearest-neighbour upscaler (checks scale handling)."""
    x, y = _io()
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    node = helper.make_node("Resize", ["image", "", "scales"], ["output"], mode="nearest")
    graph = helper.make_graph([node], name, [x], [y], [scales])
    return _save(
        graph,
        root / name,
        name=name,
        version="test",
        task="super-resolution",
        output_names=["output"],
        scale=2,
        tile_px=tile_px,
        halo_px=2,
    )


def tissue_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An H&E-like RGB image: a white background with textured pink/purple tissue blobs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.full((height, width, 3), 242, dtype=np.float32)
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(4):
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        r = rng.uniform(0.12, 0.3) * min(height, width)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    texture = rng.normal(0, 25, (height, width, 1)) + np.array([200, 110, 170])
    image[mask] = texture[mask]
    return np.clip(image, 0, 255).astype(np.uint8)


def write_pyramid_tiff(path: Path, image: np.ndarray, mpp: float = 0.5, levels: int = 3) -> Path:
    """A tiled, pyramidal (one page per level) RGB TIFF that OpenSlide reads as generic TIFF."""
    resolution = (10000.0 / mpp, 10000.0 / mpp)
    with tifffile.TiffWriter(path) as tif:
        for level in range(levels):
            data = image[:: 2**level, :: 2**level]
            tif.write(
                data,
                tile=(256, 256),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": 95},
                resolution=resolution,
                resolutionunit="CENTIMETER",
                subfiletype=1 if level else 0,
            )
    return path


@dataclass(frozen=True)
class PatchedSlide:
    """Real tissue (scikit-image's IHC image, mirrored) with blurred patches of known class."""

    sharp: np.ndarray
    pixels: np.ndarray
    truth: np.ndarray  # per pixel: 0 sharp, 2 defocus, 3 motion, 4 mixed (blur-map values)
    patches: list[tuple[tuple[int, int, int, int], int]]


BLUR_PATCHES = (
    ((300, 260, 800, 640), 2),
    ((1700, 1150, 700, 600), 3),
    ((2200, 220, 560, 560), 4),
)


def patched_slide(height: int = 2048, width: int = 3072, scale: int = 1) -> PatchedSlide:
    """About 80 % sharp tissue with a defocus (4 px disk), a motion (15 px) and a mixed patch.

    ``scale`` multiplies the size and the patches' boxes (the blur stays the same).
    """
    height, width = height * scale, width * scale
    patches = [(tuple(v * scale for v in box), value) for box, value in BLUR_PATCHES]
    from skimage import data

    from models.training import degradations as deg

    ihc = data.immunohistochemistry()
    sharp = np.pad(
        ihc, ((0, height - ihc.shape[0]), (0, width - ihc.shape[1]), (0, 0)), "symmetric"
    )
    psfs = {
        2: deg.defocus_psf(4.0, "disk"),
        3: deg.motion_psf(15.0, 0.0),
        4: deg.combine_psfs(deg.motion_psf(12.0, 0.0), deg.defocus_psf(3.0, "disk")),
    }
    unit = sharp.astype(np.float32) / 255.0
    pixels = sharp.copy()
    truth = np.zeros((height, width), dtype=np.uint8)
    for (x, y, w, h), value in patches:
        box = (slice(y, y + h), slice(x, x + w))
        margin = 64
        window = (slice(y - margin, y + h + margin), slice(x - margin, x + w + margin))
        blurred = deg.convolve(unit[window], psfs[value])[margin:-margin, margin:-margin]
        pixels[box] = np.clip(np.rint(blurred * 255.0), 0, 255).astype(np.uint8)
        truth[box] = value
    return PatchedSlide(sharp, pixels, truth, patches)  # type: ignore[arg-type]


def run_job(store: Store, settings: Settings, job_id: str) -> None:
    """Every step of a job in order, as the Celery tasks would run them."""
    step = jobs.start(store, settings, job_id)
    if step.phase == "classify":
        done = [jobs.run_block(store, settings, job_id, i) for i in step.todo]
        assert done[-1] and not any(done[:-1])
        step = jobs.NextStep("restore", jobs.route(store, settings, job_id))
    for index in step.todo:
        jobs.run_region(store, settings, job_id, index)
    for index in job_hooks.todo(store, job_id):
        job_hooks.run_region(store, settings, job_id, index)
    assert jobs.finish(store, settings, job_id, "task")


def add_job(
    store: Store, settings: Settings, slide_path: Path, job_id: str, model: str | list[str]
) -> None:
    """Add a slide file and a job on it (``auto``, a model or a chain) to a store."""
    folder = settings.data_dir / f"slide-{job_id}"
    folder.mkdir()
    inspected = inspect_upload(str(slide_path), str(folder), (2**32, 10**8), 10**9)
    info = inspected["info"]
    store.add_slide(
        {
            "id": f"s-{job_id}",
            "filename": "patched.tif",
            "sha256": "0" * 64,
            "size_bytes": 1,
            "path": inspected["path"],
            "info": info,
        }
    )
    auto = model == "auto"
    manifests = [get_model([ZOO_DIR], n).manifest for n in requested_models(model)]
    params = plan_params(
        (info["width"], info["height"]), manifests, settings, auto=auto, classify=True
    )
    store.add_job({"id": job_id, "slide_id": f"s-{job_id}", "model": "x", "params": params})
