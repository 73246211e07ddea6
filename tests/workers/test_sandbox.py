import pytest
from PIL import Image

from workers import sandbox
from workers.errors import InvalidInput, TooLarge, UnsupportedFormat


@pytest.fixture
def small_sandbox():
    box = sandbox.Sandbox(memory_mb=400, timeout_s=60, workers=1)
    yield box
    box.close()


def test_a_file_that_needs_too_much_memory_gets_a_clear_error(small_sandbox, tmp_path) -> None:
    Image.new("RGB", (8000, 8000), (200, 100, 150)).save(tmp_path / "bomb.png")  # 192 MB decoded
    with pytest.raises(TooLarge, match="more memory than readers may use"):
        small_sandbox.run(
            sandbox.inspect_upload, str(tmp_path / "bomb.png"), str(tmp_path), (2**32, 10**9), 10**9
        )


def test_sandbox_keeps_working_after_a_failure(small_sandbox, tmp_path, pyramid_tiff) -> None:
    (tmp_path / "x.txt").write_text("nope")
    with pytest.raises(UnsupportedFormat):
        small_sandbox.run(
            sandbox.inspect_upload, str(tmp_path / "x.txt"), str(tmp_path), (2**32, 10**9), 10**9
        )
    result = small_sandbox.run(
        sandbox.inspect_upload, str(pyramid_tiff), str(tmp_path), (2**32, 10**9), 10**9
    )
    assert result["info"]["width"] == 1500 and (tmp_path / "thumbnail.png").is_file()


def test_crashed_child_is_replaced(small_sandbox) -> None:
    with pytest.raises(InvalidInput, match="crashed"):
        small_sandbox.run(_crash)
    assert small_sandbox.run(pow, 2, 10) == 1024


def _crash() -> None:
    import os

    os._exit(1)
