"""Every shipped model: manifest, sha256 and ONNX contract shapes; the classifier names blurs."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models.manifest import BLUR_CLASSES, file_sha256, load_manifest

ZOO = Path(__file__).resolve().parents[2] / "models" / "zoo"
SHIPPED = ["deblur-motion", "deblur-defocus", "sr-x2", "sr-x4", "blur-classifier"]
present = [name for name in SHIPPED if (ZOO / name / "manifest.json").exists()]


def test_all_five_models_are_shipped() -> None:
    assert present == SHIPPED


@pytest.mark.parametrize("name", present)
def test_manifest_matches_the_files(name: str) -> None:
    folder = ZOO / name
    manifest = load_manifest(folder / "manifest.json")
    assert manifest.name == name
    assert manifest.sha256 == file_sha256(folder / manifest.file)
    assert (folder / "checkpoint.pt").exists()
    for path in (folder / manifest.file, folder / "checkpoint.pt"):
        assert path.stat().st_size < 5_000_000, f"{path} too large for the repo"
    assert manifest.throughput_mpx_per_s is not None and manifest.throughput_mpx_per_s > 0
    assert manifest.training is not None and manifest.training.minutes
    assert "python -m models.train" in manifest.training.command
    assert manifest.metrics, "evaluation metrics missing from the manifest"


# The recorded figures depend on the VM they were measured on (each manifest names its CPU):
# the deblur-defocus graph of 1.3.0 measured 1.65 MP/s on the thirteenth release's VM (AMD
# EPYC, AVX2), 0.77 on the twelfth's, 1.73 on the eleventh's and 2.53 on the eighth's; 1.3.1
# (the folded DCT) measured 2.30 on the fourteenth's (AVX-512), where 1.3.0 ran at 0.86-0.92
# of its speed in back-to-back blocks (models/README.md). deblur-motion measured 1.89 there.
# Strict, so that a mark must go once a re-measured figure meets the target again.
SLOW_ON_THIS_VM = ("deblur-motion",)
BELOW_SPEED_TARGET = pytest.mark.xfail(
    reason="measured 1.89 MP/s on the latest release's VM", strict=True
)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=BELOW_SPEED_TARGET) if n in SLOW_ON_THIS_VM else n for n in present],
)
def test_recorded_cpu_throughput_meets_the_2_mpx_per_s_target(name: str) -> None:
    manifest = load_manifest(ZOO / name / "manifest.json")
    assert manifest.throughput_mpx_per_s is not None and manifest.throughput_mpx_per_s >= 2.0


@pytest.mark.parametrize("name", present)
def test_onnx_runs_with_the_contract_shapes(name: str) -> None:
    folder = ZOO / name
    manifest = load_manifest(folder / "manifest.json")
    sess = ort.InferenceSession(str(folder / manifest.file), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [manifest.input_name]
    assert [o.name for o in sess.get_outputs()] == manifest.output_names
    rng = np.random.default_rng(0)
    if manifest.kind == "classifier":
        x = rng.random((2, manifest.in_channels, manifest.tile_px, manifest.tile_px), "float32")
        logits, extent = sess.run(None, {manifest.input_name: x})
        assert logits.shape == (2, len(BLUR_CLASSES)) and extent.shape == (2, 1)
        assert (extent >= 0).all()
    else:
        least = manifest.min_size_px
        for h, w in ((max(64, least), max(64, least)), (max(40, least), max(72, least))):
            x = rng.random((1, manifest.in_channels, h, w), dtype=np.float32)
            (out,) = sess.run(None, {manifest.input_name: x})
            s = manifest.scale
            assert out.shape == (1, manifest.out_channels, h * s, w * s)
            assert np.isfinite(out).all()


@pytest.mark.skipif("blur-classifier" not in present, reason="classifier not shipped")
def test_the_shipped_classifier_names_each_blur_and_its_extent() -> None:
    from models.training import degradations as deg
    from tests.models.conftest import synthetic_tissue

    sess = ort.InferenceSession(str(ZOO / "blur-classifier" / "model.onnx"))
    motion, disk = deg.motion_psf(15, 30.0), deg.disk_psf(4.0)
    for seed in range(3):
        sharp = synthetic_tissue(192, seed)
        blurred = [
            sharp,
            deg.convolve(sharp, disk),
            deg.convolve(sharp, motion),
            deg.convolve(sharp, deg.combine_psfs(motion, disk)),
        ]
        tiles = np.stack([im[32:160, 32:160].transpose(2, 0, 1) for im in blurred])
        logits, extent = sess.run(None, {"image": tiles.astype(np.float32)})
        assert list(logits.argmax(axis=1)) == [0, 1, 2, 3]  # in-focus, defocus, motion, mixed
        true_extent = [
            0.0,
            *(deg.psf_extent_px(p) for p in (disk, motion, deg.combine_psfs(motion, disk))),
        ]
        np.testing.assert_allclose(extent[:, 0], true_extent, atol=3.0)
