from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import fixtures

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SMALL_SVS = SHARED_DATA / "wsi" / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="session")
def test_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with the test-only ONNX graphs."""
    root = tmp_path_factory.mktemp("models")
    fixtures.identity_model(root)
    fixtures.blur_model(root)
    fixtures.upscale_model(root)
    return root


@pytest.fixture(scope="session")
def pyramid_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1500 x 1200 tiled pyramidal TIFF with tissue on a white background."""
    path = tmp_path_factory.mktemp("slides") / "synthetic.tif"
    return fixtures.write_pyramid_tiff(path, fixtures.tissue_image(1200, 1500))


@pytest.fixture(scope="session")
def small_svs() -> Path:
    """The real Aperio slide from ../shared/data (skipped where that folder is absent)."""
    if not SMALL_SVS.is_file():
        pytest.skip("../shared/data/wsi/CMU-1-Small-Region.svs is not present")
    return SMALL_SVS


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("RESTORE_"):
            monkeypatch.delenv(key)
