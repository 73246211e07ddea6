from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models.registry import discover, get_model
from models.runtime import load_model
from tests.fixtures import (
    blocky_identity_model,
    grey_doubling_model,
    identity_model,
    small_input_refusing_model,
    upscale_model,
)
from workers.errors import ModelUnavailable


def test_sizes_are_padded_to_the_models_multiple_and_cropped_back(tmp_path: Path) -> None:
    blocky_identity_model(tmp_path)
    model = load_model(get_model([tmp_path], "blocky"), ["CPUExecutionProvider"])
    batch = np.random.default_rng(0).random((2, 3, 100, 75), dtype=np.float32)
    assert np.array_equal(model(batch), batch)
    assert model.provider == "CPUExecutionProvider"


def test_inputs_smaller_than_the_models_minimum_are_padded_up_to_it(tmp_path: Path) -> None:
    small_input_refusing_model(tmp_path, least=64)
    model = load_model(get_model([tmp_path], "needs-64"), ["CPUExecutionProvider"])
    batch = np.random.default_rng(2).random((2, 3, 20, 30), dtype=np.float32)
    assert np.array_equal(model(batch), batch)
    direct = model.session.run(None, {"image": batch})[0]
    assert not direct.any()  # the fixture really refuses small inputs


def test_one_channel_models_restore_each_channel(tmp_path: Path) -> None:
    grey_doubling_model(tmp_path)
    model = load_model(get_model([tmp_path], "grey-x2"), ["CPUExecutionProvider"])
    batch = np.random.default_rng(1).random((2, 3, 16, 24), dtype=np.float32)
    assert np.allclose(model(batch), 2 * batch)


def test_scale_is_applied_to_the_crop(tmp_path: Path) -> None:
    upscale_model(tmp_path)
    model = load_model(get_model([tmp_path], "nearest-x2"), ["CPUExecutionProvider"])
    assert model(np.zeros((1, 3, 33, 17), np.float32)).shape == (1, 3, 66, 34)


def test_cuda_is_used_when_present_and_cpu_otherwise(tmp_path: Path) -> None:
    identity_model(tmp_path)
    wanted = ["NoSuchExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    model = load_model(get_model([tmp_path], "identity"), wanted)
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    assert model.provider == ("CUDAExecutionProvider" if has_cuda else "CPUExecutionProvider")
    assert model.session.get_providers()[0] == model.provider


def test_tampered_model_file_is_refused(tmp_path: Path) -> None:
    identity_model(tmp_path)
    with (tmp_path / "identity" / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelUnavailable, match="sha256"):
        get_model([tmp_path], "identity").verify()


def test_invalid_manifests_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    assert discover([tmp_path]) == {}
    with pytest.raises(ModelUnavailable, match="not installed"):
        get_model([tmp_path], "broken")


def test_a_worker_process_reuses_one_session_per_model(tmp_path: Path) -> None:
    identity_model(tmp_path)
    installed = get_model([tmp_path], "identity")
    first = load_model(installed, ["CPUExecutionProvider"])
    assert load_model(installed, ["CPUExecutionProvider"]) is first
