import dataclasses
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.manifest import file_sha256, load_manifest  # noqa: E402
from models.runtime import open_session  # noqa: E402
from models.training.data import ImagePool, discover_images  # noqa: E402
from models.training.export import (  # noqa: E402
    build_network,
    export_onnx,
    load_checkpoint,
    parity,
)
from models.training.networks import SPECTRUM_FEATURES, PatchCritic  # noqa: E402
from models.training.tasks import TASKS, TaskConfig  # noqa: E402
from models.training.trainer import (  # noqa: E402
    WARMUP_STEPS,
    TrainOptions,
    batch_stream,
    train,
)

TINY = {
    "unet": {"base": 4, "levels": 3},
    "wiener-unet": {"base": 4, "levels": 3},
    "defocus-wiener-unet": {"base": 4, "levels": 3},
    "srresnet": {"width": 8, "blocks": 1},
    "unet-sr": {"base": 4, "levels": 3},
    "classifier": {"width": 4},
}


def tiny(name: str) -> TaskConfig:
    config = TASKS[name]
    crop = 64 if config.scale == 1 else 16 * config.scale
    return dataclasses.replace(
        config,
        network_kwargs={**config.network_kwargs, **TINY[config.network]},
        crop_px=crop,
        margin_px=8,
        batch=2,
        tile_px=32,
        halo_px=4 if config.kind == "generator" else 0,
        min_tissue=0.0,
    )


def options(folder: Path, out: Path, **kwargs: object) -> TrainOptions:
    base = {
        "data": [folder],
        "out": out,
        "work_dir": out / "state",
        "steps": 3,
        "log_every": 1,
        "held_out_fraction": 0.0,
        "threads": 1,
        "command": "pytest (tiny network)",
    }
    return TrainOptions(**{**base, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "out_shape"),
    [
        ("deblur-motion", (1, 3, 64, 48)),
        ("deblur-defocus", (1, 3, 64, 48)),
        ("sr-x2", (1, 1, 128, 96)),
        ("sr-x4", (1, 3, 256, 192)),
    ],
)
def test_generators_are_fully_convolutional(name: str, out_shape: tuple[int, ...]) -> None:
    config = TASKS[name]
    net = build_network(config.network, config.network_kwargs).eval()
    with torch.no_grad():
        out = net(torch.rand(1, config.channels, 64, 48))
    assert tuple(out.shape) == out_shape


@pytest.mark.parametrize("name", ["deblur-motion", "deblur-defocus"])
def test_the_unet_folds_its_input_with_space_to_depth_in_onnx(name: str, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    config = tiny(name)
    model = build_network(config.network, config.network_kwargs).eval()
    export_onnx(model, config, tmp_path / "model.onnx")
    nodes = onnx.load(str(tmp_path / "model.onnx")).graph.node
    transposes = [list(a.ints) for n in nodes if n.op_type == "Transpose" for a in n.attribute]
    assert "SpaceToDepth" in [n.op_type for n in nodes]
    assert all(len(perm) < 6 for perm in transposes)  # no pixel_unshuffle as a 6-D Transpose
    assert parity(model, tmp_path / "model.onnx", [(1, 3, 64, 48), (2, 3, 72, 96)]) < 1e-4


def test_classifier_and_critic_shapes() -> None:
    config = TASKS["blur-classifier"]
    net = build_network(config.network, config.network_kwargs).eval()
    with torch.no_grad():
        logits, extent = net(torch.rand(3, 3, 128, 128))
    assert logits.shape == (3, 4) and extent.shape == (3, 1) and (extent >= 0).all()
    assert PatchCritic(3)(torch.rand(2, 3, 64, 64)).shape[:2] == (2, 1)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_few_training_steps_then_export_round_trip(
    name: str, image_folder: Path, tmp_path: Path
) -> None:
    config = tiny(name)
    adversarial = 2 if config.kind == "generator" else 0
    train(config, options(image_folder, tmp_path, adversarial_steps=adversarial))
    manifest = load_manifest(tmp_path / "manifest.json")
    assert manifest.sha256 == file_sha256(tmp_path / "model.onnx")
    assert manifest.throughput_mpx_per_s and manifest.throughput_mpx_per_s > 0
    assert f"{os.cpu_count()} cores" in (manifest.model_extra or {})["throughput"]["cpu"]
    assert manifest.training and manifest.training.command
    model, payload = load_checkpoint(tmp_path / "checkpoint.pt")
    assert payload["task"] == name
    shapes = [(1, config.channels, 64, 64), (2, config.channels, 72, 96)]
    assert parity(model, tmp_path / "model.onnx", shapes) < 1e-4
    x = np.random.default_rng(0).random((1, config.channels, 64, 88), dtype=np.float32)
    outputs = open_session(tmp_path / "model.onnx").run(None, {"image": x})
    assert [o.name for o in open_session(tmp_path / "model.onnx").get_outputs()] == (
        manifest.output_names
    )
    if config.kind == "classifier":
        assert outputs[0].shape == (1, 4) and outputs[1].shape == (1, 1)
    else:
        s = config.scale
        assert outputs[0].shape == (1, config.channels, 64 * s, 88 * s)


def test_training_is_seeded_and_resumable(image_folder: Path, tmp_path: Path) -> None:
    config = tiny("deblur-defocus")
    straight = tmp_path / "straight"
    train(config, options(image_folder, straight, steps=4, export=False))
    split = tmp_path / "split"
    train(config, options(image_folder, split, steps=2, export=False))
    train(config, options(image_folder, split, steps=4, resume=True, export=False))
    a = torch.load(straight / "state" / "train_state.pt", weights_only=False)
    b = torch.load(split / "state" / "train_state.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    for key, value in a["model"].items():
        torch.testing.assert_close(value, b["model"][key], rtol=1e-5, atol=1e-6)
    assert config.clip_grad_norm and all("grad_norm" in r for r in a["history"])


def test_ema_exports_the_moving_average_and_survives_resume(
    image_folder: Path, tmp_path: Path
) -> None:
    config = tiny("sr-x4")
    straight = tmp_path / "straight"
    train(config, options(image_folder, straight, steps=4, ema_decay=0.5))
    split = tmp_path / "split"
    train(config, options(image_folder, split, steps=2, ema_decay=0.5, export=False))
    train(config, options(image_folder, split, steps=4, ema_decay=0.5, resume=True))
    a = torch.load(straight / "state" / "train_state.pt", weights_only=False)
    b = torch.load(split / "state" / "train_state.pt", weights_only=False)
    assert a["average"]["n_averaged"] == 4
    for key, value in a["average"].items():
        torch.testing.assert_close(value, b["average"][key], rtol=1e-5, atol=1e-6)
    exported = load_checkpoint(straight / "checkpoint.pt")[0].state_dict()
    averaged = {k.removeprefix("module."): v for k, v in a["average"].items()}
    assert all(torch.equal(exported[k], averaged[k]) for k in exported)
    assert not all(torch.equal(exported[k], a["model"][k]) for k in exported)
    run = load_manifest(straight / "manifest.json").model_extra["training_run"]
    assert run["ema_decay"] == 0.5
    with pytest.raises(ValueError, match="between 0 and 1"):
        train(config, options(image_folder, tmp_path / "bad", steps=1, ema_decay=1.5))


def test_steps_auto_fits_the_schedule_to_the_time_budget(
    image_folder: Path, tmp_path: Path
) -> None:
    config = tiny("sr-x4")
    train(config, options(image_folder, tmp_path, steps=None, minutes=0.15, export=False))
    state = torch.load(tmp_path / "state" / "train_state.pt", weights_only=False)
    assert state["steps"] > WARMUP_STEPS
    # stopped by the fitted schedule, or by the clock near its end on a loaded machine
    assert state["step"] >= 0.8 * state["steps"]
    assert state["history"][-1]["lr"] < 0.3 * config.lr
    with pytest.raises(ValueError, match="needs --minutes"):
        train(config, options(image_folder, tmp_path / "no-budget", steps=None))


def test_loader_workers_make_the_same_batches_in_the_same_order(
    image_folder: Path, tmp_path: Path
) -> None:
    config = tiny("sr-x4")
    inline = tmp_path / "inline"
    train(config, options(image_folder, inline, steps=4, export=False))
    ahead = tmp_path / "ahead"
    train(config, options(image_folder, ahead, steps=4, export=False, loader_workers=2))
    a = torch.load(inline / "state" / "train_state.pt", weights_only=False)
    b = torch.load(ahead / "state" / "train_state.pt", weights_only=False)
    for key, value in a["model"].items():
        torch.testing.assert_close(value, b["model"][key], rtol=1e-5, atol=1e-6)


def loader_pool(config: TaskConfig, folder: Path) -> ImagePool:
    side = config.crop_px + 2 * config.margin_px
    return ImagePool.load(discover_images([folder]), config.channels, side, config.min_tissue)


def test_closing_the_stream_stops_its_loaders(image_folder: Path) -> None:
    config = tiny("sr-x4")
    pool = loader_pool(config, image_folder)
    inline = batch_stream(config, pool, seed=0, size=2, first=5)
    stream = batch_stream(config, pool, seed=0, size=2, first=5, workers=3)
    for _ in range(4):
        assert np.array_equal(next(stream)["input"], next(inline)["input"])
    assert len(multiprocessing.active_children()) == 3
    stream.close()
    assert multiprocessing.active_children() == []


def test_a_failing_loader_raises_instead_of_hanging(image_folder: Path) -> None:
    def broken(rng: np.random.Generator) -> None:
        raise ValueError("no such degradation")

    config = dataclasses.replace(tiny("sr-x4"), sample=broken)
    stream = batch_stream(config, loader_pool(config, image_folder), 0, 2, 0, workers=2)
    with pytest.raises(RuntimeError, match="no such degradation"):
        next(stream)
    stream.close()
    assert multiprocessing.active_children() == []


def test_fine_tuning_starts_from_a_checkpoint(image_folder: Path, tmp_path: Path) -> None:
    config = tiny("deblur-motion")
    train(config, options(image_folder, tmp_path / "base", steps=2))
    tuned = tmp_path / "tuned"
    train(
        config,
        options(image_folder, tuned, steps=2, init_from=tmp_path / "base" / "checkpoint.pt"),
    )
    assert (tuned / "model.onnx").exists()


def test_fine_tuning_keeps_the_checkpoints_network_not_the_tasks_default(
    image_folder: Path, tmp_path: Path
) -> None:
    config = tiny("blur-classifier")
    wider = dataclasses.replace(config, network_kwargs={**config.network_kwargs, "width": 6})
    train(wider, options(image_folder, tmp_path / "base", steps=1))
    tuned = tmp_path / "tuned"
    train(
        config, options(image_folder, tuned, steps=1, init_from=tmp_path / "base" / "checkpoint.pt")
    )
    _, payload = load_checkpoint(tuned / "checkpoint.pt")
    assert payload["network_kwargs"]["width"] == 6
    assert load_manifest(tuned / "manifest.json").model_extra["network"]["width"] == 6


def _classifier_checkpoint_without(option: str, image_folder: Path, out: Path) -> Path:
    """A tiny classifier trained one step with the task's ``option`` left out."""
    config = tiny("blur-classifier")
    plain = {k: v for k, v in config.network_kwargs.items() if k != option}
    train(dataclasses.replace(config, network_kwargs=plain), options(image_folder, out, steps=1))
    return out / "checkpoint.pt"


def test_a_checkpoint_gets_the_network_options_it_predates_from_the_task(
    image_folder: Path, tmp_path: Path
) -> None:
    config = tiny("blur-classifier")
    old = _classifier_checkpoint_without("average_rotated", image_folder, tmp_path / "a")
    assert not load_checkpoint(old)[0].average_rotated
    assert load_checkpoint(old, {"average_rotated": True, "width": 9})[0].average_rotated
    assert load_checkpoint(old, {"width": 9})[1]["network_kwargs"]["width"] == 4  # its own wins
    assert "base" not in load_checkpoint(old, {"base": 24})[1]["network_kwargs"]  # not its option
    train(config, options(image_folder, tmp_path / "b", steps=1, init_from=old))
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")[0].average_rotated


@pytest.mark.parametrize("bins", [0, 16])
def test_the_classifier_averages_over_the_turned_tile_when_evaluating(bins: int) -> None:
    from models.training.networks import BlurClassifier

    net = BlurClassifier(3, 4, average_rotated=True, spectrum_bins=bins).eval()
    tiles = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        (a, ea), (b, eb) = net.predict(tiles), net.predict(tiles.flip(2, 3))
        calls = []
        if bins:  # the turned tile has the same spectrum: the branch runs once, on 3 tiles
            net.spectrum.register_forward_hook(lambda m, i, o: calls.append(len(o)))
        logits, extent = net(tiles)
    assert calls == ([3] if bins else [])
    torch.testing.assert_close(logits, (a + b) / 2)
    torch.testing.assert_close(extent, (ea + eb) / 2)
    assert not torch.allclose(logits, a)
    net.train()
    assert net(tiles)[0].shape == (3, 4)  # training sees each tile once


def test_fine_tuning_can_keep_the_psf_estimator_fixed(image_folder: Path, tmp_path: Path) -> None:
    config = tiny("deblur-defocus")
    train(config, options(image_folder, tmp_path / "base", steps=2))
    tuned = tmp_path / "tuned"
    base = tmp_path / "base" / "checkpoint.pt"
    train(config, options(image_folder, tuned, steps=3, init_from=base, freeze=["estimator"]))
    before, _ = load_checkpoint(base)
    after, _ = load_checkpoint(tuned / "checkpoint.pt")
    old, new = before.state_dict(), after.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith("estimator."))
    assert not all(torch.equal(old[k], new[k]) for k in old if k.startswith("refine."))
    with pytest.raises(ValueError, match="no parameter"):
        train(config, options(image_folder, tmp_path / "typo", steps=1, freeze=["estimater"]))


def test_a_checkpoint_from_before_an_input_was_added_loads_and_computes_the_same() -> None:
    from models.training.export import load_weights
    from models.training.networks import UNetDeblur

    old = UNetDeblur(channels=3, base=4, levels=2, in_channels=5)
    new = UNetDeblur(channels=3, base=4, levels=2, in_channels=7)
    load_weights(new, old.state_dict())
    features, start = torch.rand(1, 7, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = old.residual(features[:, :5], start)
        torch.testing.assert_close(new.residual(features, start), expected)
    with pytest.raises(ValueError, match="does not fit"):
        load_weights(UNetDeblur(channels=3, base=8, levels=2), old.state_dict())


def test_a_classifier_from_before_the_spectrum_branch_loads_and_computes_the_same(
    image_folder: Path, tmp_path: Path
) -> None:
    config = tiny("blur-classifier")
    path = _classifier_checkpoint_without("spectrum_bins", image_folder, tmp_path / "a")
    old, _ = load_checkpoint(path)
    new, payload = load_checkpoint(path, {"spectrum_bins": 8})
    assert payload["network_kwargs"]["spectrum_bins"] == 8 and not old.spectrum_bins
    tiles = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        (a, ea), (b, eb) = old(tiles), new(tiles)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ea, eb)
    train(config, options(image_folder, tmp_path / "b", steps=2, init_from=path))
    tuned, _ = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert tuned.spectrum_bins == config.network_kwargs["spectrum_bins"]
    assert tuned.logits.weight[:, -SPECTRUM_FEATURES:].abs().sum() > 0  # the branch is in use


def test_a_checkpoint_without_a_branch_does_not_load_into_a_network_that_has_it() -> None:
    from models.training.export import load_weights
    from models.training.networks import BlurClassifier

    old = BlurClassifier(3, 4)
    with pytest.raises(ValueError, match="does not fit the network"):
        load_weights(BlurClassifier(3, 4, spectrum_bins=8), old.state_dict())


@pytest.mark.parametrize("term", ["ssim_weight", "frequency_weight"])
def test_each_loss_weight_reaches_the_generator_loss(
    term: str, image_folder: Path, tmp_path: Path
) -> None:
    config = tiny("sr-x4")
    weights = {"a": 0.2, "b": 0.2, "c": 2.0}
    for run, weight in weights.items():
        train(config, options(image_folder, tmp_path / run, steps=2, **{term: weight}))
    a, b, c = (load_checkpoint(tmp_path / run / "checkpoint.pt")[0].state_dict() for run in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)  # runs are reproducible...
    assert not all(torch.equal(a[k], c[k]) for k in a)  # ...so the weight made the difference


def test_fine_tuning_can_deepen_a_super_resolution_network(
    image_folder: Path, tmp_path: Path
) -> None:
    config = tiny("sr-x4")
    train(config, options(image_folder, tmp_path / "base", steps=1))
    base = tmp_path / "base" / "checkpoint.pt"
    shallow, _ = load_checkpoint(base)
    image = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(shallow.deepened(2)(image), shallow(image))
    tuned = tmp_path / "tuned"
    train(config, options(image_folder, tuned, steps=2, init_from=base, add_blocks=2))
    deeper, payload = load_checkpoint(tuned / "checkpoint.pt")
    assert deeper.blocks == payload["network_kwargs"]["blocks"] == shallow.blocks + 2
    assert load_manifest(tuned / "manifest.json").model_extra["network"]["blocks"] == deeper.blocks
    motion = tiny("deblur-motion")
    train(motion, options(image_folder, tmp_path / "m", steps=1))
    init = tmp_path / "m" / "checkpoint.pt"
    with pytest.raises(ValueError, match="srresnet"):
        train(motion, options(image_folder, tmp_path / "m2", steps=1, init_from=init, add_blocks=1))
    with pytest.raises(ValueError, match="init-from"):
        train(config, options(image_folder, tmp_path / "no-init", steps=1, add_blocks=1))


@pytest.mark.parametrize("name", ["deblur-motion", "deblur-defocus"])
def test_the_psf_estimator_learns_from_the_auxiliary_loss(name: str) -> None:
    config = tiny(name)
    net = build_network(config.network, config.network_kwargs)
    image = torch.rand(2, 3, 64, 64)
    blur = torch.tensor([[12.0, 1.0, 0.0, 1.0], [0.0, 0.0, 4.0, 0.0]])  # BlurParams.labels()
    net.auxiliary_loss(image, blur).backward()
    last = net.estimator.mlp[-1]
    assert (last.weight.grad.abs().sum(dim=1) > 0).all()  # the value and the property output
    assert all(p.grad is None for p in net.refine.parameters())


def test_classifier_evaluation_reports_accuracy_per_data_folder(
    image_folder: Path, tmp_path: Path
) -> None:
    from models.training.evaluation import evaluate_task

    config = tiny("blur-classifier")
    train(config, options(image_folder, tmp_path / "model", steps=2))
    second = tmp_path / "second"
    second.mkdir()
    for path in sorted(image_folder.glob("*.png"))[:2]:
        (second / path.name).write_bytes(path.read_bytes())
    report = evaluate_task(
        config, [image_folder, second], tmp_path / "model", tmp_path / "reports", 1.0
    )
    by_source = report["accuracy_by_source"]
    assert set(by_source) == {str(image_folder), str(second)}
    assert sum(entry["tiles"] for entry in by_source.values()) == report["tiles"] > 0
    assert load_manifest(tmp_path / "model" / "manifest.json").metrics["accuracy_by_source"]
