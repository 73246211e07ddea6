import time
from concurrent.futures import ThreadPoolExecutor

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


def test_a_call_that_times_out_fails_alone() -> None:
    """A time-out kills its own child only: a call running beside it still returns."""
    box = sandbox.Sandbox(memory_mb=1024, timeout_s=60, workers=2)
    try:
        with ThreadPoolExecutor(2) as threads:  # start both children
            assert list(threads.map(lambda s: box.run(_nap, s), [0.5, 0.5])) == [0.5, 0.5]
        with ThreadPoolExecutor(2) as threads:
            slow = threads.submit(_timed, box, 600.0, 2.0)
            time.sleep(0.3)
            beside = threads.submit(_timed, box, 4.0, 30.0)
            (slow_s, slow_outcome), (beside_s, beside_outcome) = slow.result(), beside.result()
        print(
            f"slow call failed after {slow_s:.1f} s; one beside it returned after {beside_s:.1f} s"
        )
        assert isinstance(slow_outcome, InvalidInput) and "longer than 2.0 s" in str(slow_outcome)
        assert slow_s < 5 and beside_outcome == 4.0
        assert box.run(pow, 2, 10) == 1024  # the killed child was replaced
    finally:
        box.close()


def _timed(box: sandbox.Sandbox, nap_s: float, timeout_s: float) -> tuple[float, object]:
    started = time.perf_counter()
    try:
        outcome: object = box.run(_nap, nap_s, timeout_s=timeout_s)
    except InvalidInput as exc:
        outcome = exc
    return time.perf_counter() - started, outcome


def _nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
