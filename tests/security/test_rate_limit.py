"""Rate limits per key (429 with Retry-After past the burst) and per address for bad keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app import rate_limit
from app.rate_limit import RateLimiter
from tests.app.server import Server, create_key
from workers.errors import RateLimited

POLL_PER_S, POLL_S = 20, 3.0


def test_a_bucket_allows_its_burst_then_its_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(rate_limit.time, "monotonic", lambda: now[0])
    limiter = RateLimiter(per_s=2.0, burst=3)
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(RateLimited) as refused:
        limiter.take("a")
    assert refused.value.retry_after_s == 1
    limiter.take("b")  # each caller has its own bucket
    now[0] += 0.5  # one token back
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")


def limited_server(data: Path, test_models: Path, **limits: str) -> Server:
    env = {"RESTORE_DATA_DIR": str(data / "var"), "RESTORE_MODELS_DIRS": f'["{test_models}"]'}
    env |= {f"RESTORE_{name.upper()}": value for name, value in limits.items()}
    return Server(env, data / "server.log").start(wait_for_worker=False)


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory, test_models: Path) -> Iterator[Server]:
    """A server with the default limits (50 per second per key after a burst of 100)."""
    server = limited_server(tmp_path_factory.mktemp("limits"), test_models)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory, test_models: Path) -> Iterator[Server]:
    """5 per second after a burst of 10: a test client outruns it on any machine."""
    data = tmp_path_factory.mktemp("tight")
    server = limited_server(data, test_models, rate_limit_per_s="5", rate_limit_burst="10")
    yield server
    server.stop()


@pytest.mark.integration
@pytest.mark.slow
def test_polling_at_20_per_s_is_never_refused(defaults: Server) -> None:
    statuses = []
    with defaults.client(key=create_key(defaults.env, "read")) as client:
        started = time.monotonic()
        for index in range(int(POLL_PER_S * POLL_S)):
            time.sleep(max(0.0, started + index / POLL_PER_S - time.monotonic()))
            statuses.append(client.get("/v1/jobs").status_code)
        rate = len(statuses) / (time.monotonic() - started)
    print(f"\npolling: {len(statuses)} requests at {rate:.1f}/s, {statuses.count(429)} refused")
    assert statuses.count(200) == len(statuses)


@pytest.mark.integration
@pytest.mark.slow
def test_a_burst_over_the_limit_gets_429_with_retry_after(tight: Server) -> None:
    def hammer(_: int) -> list[httpx.Response]:
        with tight.client() as client:
            return [client.get("/v1/hooks") for _ in range(15)]

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        answers = [r for batch in pool.map(hammer, range(4)) for r in batch]
    seconds = time.monotonic() - started
    refused = [r for r in answers if r.status_code == 429]
    print(f"\nburst: {len(answers)} requests in {seconds:.1f} s, {len(refused)} answered 429")
    assert refused and {r.status_code for r in answers} == {200, 429}
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert refused[0].json()["code"] == "rate_limited"
    assert len(answers) - len(refused) <= 10 + 5 * seconds + 1
    with tight.client(key=create_key(tight.env, "read")) as other:
        assert other.get("/v1/hooks").status_code == 200  # another key has its own bucket


@pytest.mark.integration
@pytest.mark.slow
def test_guessing_keys_is_slowed_per_address(defaults: Server) -> None:
    statuses = []
    with httpx.Client(base_url=defaults.url, timeout=30) as client:
        for index in range(30):
            guess = f"rsk_{index:016x}_{'B' * 43}"
            response = client.get("/v1/jobs", headers={"X-API-Key": guess})
            statuses.append(response.status_code)
        retry_after = int(response.headers["retry-after"])
        with defaults.client() as valid:  # a valid key from the same address still works
            assert valid.get("/v1/jobs").status_code == 200
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
    assert retry_after >= 1
