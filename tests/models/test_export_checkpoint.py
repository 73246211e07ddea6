from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from models.manifest import file_sha256, load_manifest, write_manifest
from models.runtime import open_session
from models.training.cli import export_main
from models.training.export import export_checkpoint
from models.training.trainer import train
from tests.models.test_training import options, tiny

TUNING = "python -m models.train --task deblur-motion --out /tmp/run --work-dir /tmp/w --steps 1"


def _output(folder: Path) -> np.ndarray:
    x = np.random.default_rng(1).random((1, 3, 64, 72), dtype=np.float32)
    return open_session(folder / "model.onnx").run(None, {"image": x})[0]


def _shipped(image_folder: Path, folder: Path) -> None:
    """A tiny trained model folder that looks released: version 1.3.0, held-out metrics."""
    train(tiny("deblur-motion"), options(image_folder, folder, steps=1))
    manifest = load_manifest(folder / "manifest.json")
    released = manifest.model_copy(update={"version": "1.3.0", "metrics": {"psnr": 30.0}})
    write_manifest(released, folder)


def _fine_tuned(image_folder: Path, tmp_path: Path, **kwargs: object) -> tuple[Path, Path]:
    """A released folder and a run fine-tuned from its checkpoint into another folder."""
    shipped, run = tmp_path / "shipped", tmp_path / "run"
    _shipped(image_folder, shipped)
    init = shipped / "checkpoint.pt"
    train(tiny("deblur-motion"), options(image_folder, run, init_from=init, **kwargs))
    return shipped, run


def test_re_exporting_a_model_folder_keeps_its_record(image_folder: Path, tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    _shipped(image_folder, shipped)
    before = load_manifest(shipped / "manifest.json")
    output = _output(shipped)
    export_main(["--task", "deblur-motion", "--out", str(shipped)])
    after = load_manifest(shipped / "manifest.json")
    assert after.sha256 == before.sha256, "the exporter is deterministic"
    assert after.version == "1.3.0", "the very same file keeps its version"
    assert after.training == before.training
    assert after.metrics == {"psnr": 30.0}
    assert after.model_extra["training_run"] == before.model_extra["training_run"]
    assert after.sha256 == file_sha256(shipped / "model.onnx")
    np.testing.assert_allclose(_output(shipped), output, atol=1e-6)


def test_a_changed_file_from_the_same_weights_raises_the_patch(
    image_folder: Path, tmp_path: Path
) -> None:
    shipped = tmp_path / "shipped"
    _shipped(image_folder, shipped)
    manifest = load_manifest(shipped / "manifest.json")
    (shipped / "model.onnx").write_bytes(b"an older exporter's file")
    write_manifest(manifest.model_copy(update={"sha256": "0" * 64}), shipped)
    after = export_checkpoint(tiny("deblur-motion"), shipped / "checkpoint.pt", shipped)
    assert after.version == "1.3.1"
    assert after.metrics == {"psnr": 30.0}


def test_promoting_a_fine_tuning_run_chains_its_record_onto_the_parents(
    image_folder: Path, tmp_path: Path
) -> None:
    shipped, run = _fine_tuned(image_folder, tmp_path, steps=2, command=TUNING)
    parent = load_manifest(shipped / "manifest.json")
    old_output = _output(shipped)
    config = tiny("deblur-motion")
    tuned = load_manifest(run / "manifest.json")
    manifest = export_checkpoint(config, run / "checkpoint.pt", shipped, note="better on tuning")
    assert manifest.version == "1.4.0"
    assert manifest.training.command == (
        f"{parent.training.command} && python -m models.train --task deblur-motion --steps 1 "
        f"({tuned.training.minutes} min; better on tuning)"
    )
    assert manifest.training.minutes == pytest.approx(
        (parent.training.minutes or 0) + (tuned.training.minutes or 0), abs=0.06
    )
    assert manifest.training.data == parent.training.data, "the same folders, said once"
    assert manifest.training.hardware == parent.training.hardware
    assert manifest.metrics == {}, "the parent's held-out figures describe other weights"
    assert manifest.model_extra["training_run"]["steps"] == 2
    assert load_manifest(shipped / "manifest.json") == manifest
    np.testing.assert_allclose(_output(shipped), _output(run), atol=1e-6)
    assert np.abs(_output(shipped) - old_output).max() > 1e-4, "the run's weights ship"


def test_a_run_on_other_data_or_hardware_adds_them_to_the_record(
    image_folder: Path, tmp_path: Path
) -> None:
    shipped, run = _fine_tuned(image_folder, tmp_path, steps=1)
    parent = load_manifest(shipped / "manifest.json")
    tuned = load_manifest(run / "manifest.json")
    elsewhere = tuned.training.model_copy(update={"data": "a lab's tiles", "hardware": "a GPU"})
    write_manifest(tuned.model_copy(update={"training": elsewhere}), run)
    manifest = export_checkpoint(tiny("deblur-motion"), run / "checkpoint.pt", shipped)
    assert manifest.training.data == f"{parent.training.data}; then a lab's tiles"
    assert manifest.training.hardware == f"{parent.training.hardware}; then a GPU"


def test_a_checkpoint_without_a_record_ships_as_new_weights_of_unknown_training(
    image_folder: Path, tmp_path: Path
) -> None:
    shipped, run = _fine_tuned(image_folder, tmp_path, steps=1)
    parent = load_manifest(shipped / "manifest.json")
    bare = tmp_path / "bare" / "weights.pt"
    bare.parent.mkdir()
    bare.write_bytes((run / "checkpoint.pt").read_bytes())
    manifest = export_checkpoint(tiny("deblur-motion"), bare, shipped, note="a lab's")
    assert manifest.version == "1.4.0"
    assert manifest.metrics == {}, "the parent's held-out figures describe other weights"
    assert manifest.training.command == (
        f"{parent.training.command} && weights from {bare} (no training record beside it; a lab's)"
    )
    assert "training_run" not in (manifest.model_extra or {})


def test_a_checkpoint_into_an_empty_folder_is_version_one_with_the_runs_record(
    image_folder: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(tiny("deblur-motion"), options(image_folder, run, steps=1))
    manifest = export_checkpoint(tiny("deblur-motion"), run / "checkpoint.pt", tmp_path / "new")
    assert manifest.version == "1.0.0"
    assert manifest.training == load_manifest(run / "manifest.json").training


def test_training_into_a_model_folder_drops_its_held_out_figures(
    image_folder: Path, tmp_path: Path
) -> None:
    shipped = tmp_path / "shipped"
    _shipped(image_folder, shipped)
    tuning = options(image_folder, shipped, steps=1, init_from=shipped / "checkpoint.pt")
    train(tiny("deblur-motion"), tuning)
    assert load_manifest(shipped / "manifest.json").metrics == {}, "they describe other weights"
