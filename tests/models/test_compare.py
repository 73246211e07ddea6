import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.training.cli import compare_main
from models.training.comparison import compare, compare_generators, format_comparison
from models.training.data import ImagePool
from models.training.tasks import TASKS
from tests.models.conftest import synthetic_tissue

ZOO = Path(__file__).resolve().parents[2] / "models" / "zoo"


def test_the_shipped_motion_model_beats_its_input_at_every_level() -> None:
    config = TASKS["deblur-motion"]
    images = [synthetic_tissue(160, seed) for seed in (11, 12)]
    folder = ZOO / "deblur-motion"
    levels = compare_generators(config, [folder], images)
    assert list(levels) == list(config.levels)
    for figures in levels.values():
        assert figures[str(folder)]["psnr"] > figures["input"]["psnr"]
    reference = levels[config.reference]
    assert reference[str(folder)]["psnr"] > reference["input"]["psnr"] + 3.0


def test_compare_cli_uses_training_split_images_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(4):
        u8 = np.round(synthetic_tissue(256, 20 + i) * 255).astype(np.uint8)
        Image.fromarray(u8).save(tmp_path / f"tile{i}.png")
    out = tmp_path / "compare.json"
    model = str(ZOO / "deblur-defocus")
    argv = ["--task", "deblur-defocus", model, "--data", str(tmp_path), "--images", "2"]
    compare_main([*argv, "--held-out-fraction", "0", "--json", str(out)])
    table = capsys.readouterr().out
    assert "disk r=4 px (reference)" in table and model in table
    levels = json.loads(out.read_text())["levels"]
    assert levels["disk r=4 px"][model]["psnr"] > levels["disk r=4 px"]["input"]["psnr"]


def test_compare_cli_refuses_a_folder_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        compare_main(["--task", "sr-x2", str(tmp_path)])


def test_classifiers_are_compared_by_accuracy_on_blurred_tiles() -> None:
    config = TASKS["blur-classifier"]
    images = [synthetic_tissue(336, seed) for seed in (30, 31)]  # 2 x 2 crops of 128 + 2 x 40
    pool = ImagePool(images, [Path("a/one.png"), Path("a/two.png")])
    folder = ZOO / "blur-classifier"
    report = compare(config, [folder], pool, [Path("a")], count=2)
    entry = report["classifiers"][str(folder)]
    assert entry["tiles"] == 2 * 4 * 4, "2 images x 4 tile positions x 4 blurs"
    assert entry["accuracy"] > 0.5, "far above the 0.25 of guessing"
    assert format_comparison(report, config.reference).count("\n") == 2
