"""Every file of the malformed corpus, uploaded to a real server (issue 23, malformed input).

No 5xx, no crashed process, no file outside the data folder, disk use bounded by the upload
limit, and a valid upload made meanwhile succeeds. Accepted files get jobs that finish.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from tests.app.server import Server, upload, wait_for_job
from tests.reliability.processes import descendants
from tests.security.malformed_corpus import Sample, corpus
from workers.settings import ZOO_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MIB = 2**20
UPLOAD_LIMIT = 16 * MIB
LASER = {"mode": "laser-scan", "pixel_size_um": 0.4, "frame_rate_hz": 15.0, "bidirectional": True}
JOB_SAMPLE = 6
DAMAGED = ("truncated/", "flipped/", "tiff-lie/", "png-lie/", "jpeg-lie/", "dicom-lie/")
DAMAGED += ("polyglot/", "traversal/", "bomb/", "zip-")
IGNORED = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, test_models: Path) -> Iterator[Server]:
    """An embedded server with a 16 MiB upload and unpacking limit and its own TMPDIR."""
    root = tmp_path_factory.mktemp("malformed")
    (root / "tmp").mkdir()
    env = {
        "RESTORE_DATA_DIR": str(root / "var"),
        "RESTORE_MODELS_DIRS": json.dumps([str(test_models), str(ZOO_DIR)]),  # sequences: zoo
        "RESTORE_REGION_PX": "512",
        "RESTORE_WORKER_CONCURRENCY": "2",
        "RESTORE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "RESTORE_MAX_UNPACKED_BYTES": str(UPLOAD_LIMIT),
        "RESTORE_SANDBOX_TIMEOUT_S": "10",
        "RESTORE_SEQUENCE_DECODE_TIMEOUT_S": "20",
        "RESTORE_RATE_LIMIT_BURST": "100000",  # the corpus is one key's hundreds of uploads
        "TMPDIR": str(root / "tmp"),
    }
    started = Server(env, root / "server.log").start()
    yield started
    started.stop()


def files_under(folder: Path, skip: Path | None = None) -> set[Path]:
    """Every file below ``folder`` (not below ``skip``, nor in caches)."""
    found = set()
    for top, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in IGNORED and Path(top, d) != skip]
        found.update(Path(top, name) for name in names)
    return found


def disk_bytes(folder: Path) -> int:
    total = 0
    for top, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except OSError:
                continue  # removed while counted
    return total


class DiskPeak:
    """The most bytes one upload's folder (slides/<id>, sequences/<id>) held, every 20 ms."""

    def __init__(self, data: Path) -> None:
        self.roots = [data / "slides", data / "sequences"]
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> DiskPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            for root in self.roots:
                with contextlib.suppress(OSError):
                    for folder in root.iterdir():
                        self.peak = max(self.peak, disk_bytes(folder))


def post(client: httpx.Client, sample: Sample) -> httpx.Response:
    data = {"metadata": json.dumps(LASER)} if sample.route == "sequences" else {}
    files = {"file": (sample.filename, sample.data)}
    return client.post(f"/v1/{sample.route}", files=files, data=data)


class Answer(NamedTuple):
    """The server's answer to one upload."""

    status: int
    message: str
    id: str | None


class Uploader:
    """Uploads samples from a few threads; a valid upload goes in once half are done."""

    def __init__(self, server: Server, samples: list[Sample], valid: Path) -> None:
        self.server, self.samples, self.valid = server, samples, valid
        self.answers: dict[str, Answer] = {}
        self.valid_status: int | None = None
        self._half = threading.Event()
        self._local = threading.local()

    def run(self, threads: int = 2) -> None:
        meanwhile = threading.Thread(target=self._valid_upload)
        meanwhile.start()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(self._one, self.samples))
        meanwhile.join()

    def _client(self) -> httpx.Client:
        if not hasattr(self._local, "client"):
            self._local.client = self.server.client(timeout=120)
        return self._local.client  # type: ignore[no-any-return]

    def _one(self, sample: Sample) -> None:
        response = post(self._client(), sample)
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:200]}
        answer = Answer(response.status_code, body.get("message", ""), body.get("id"))
        self.answers[sample.case] = answer
        if len(self.answers) >= len(self.samples) // 2:
            self._half.set()

    def _valid_upload(self) -> None:
        self._half.wait()
        with self.server.client(timeout=120) as client:
            self.valid_status = upload(client, self.valid).status_code


def test_the_malformed_corpus_gets_4xx_or_2xx_and_harms_nothing(
    server: Server, tmp_path: Path, pyramid_tiff: Path
) -> None:
    assert server.process is not None
    data = Path(server.env["RESTORE_DATA_DIR"])
    outside = data.parent
    canary = outside / "outside"  # where the traversal samples aim
    samples = corpus(tmp_path, canary, UPLOAD_LIMIT)
    repo = Path(__file__).resolve().parents[2]
    before = files_under(outside, skip=data) | files_under(repo)
    processes = descendants(server.process.pid)
    started = time.perf_counter()
    uploader = Uploader(server, samples, pyramid_tiff)
    with DiskPeak(data) as disk:
        uploader.run()
    seconds = time.perf_counter() - started
    answers = uploader.answers
    stray = (files_under(outside, skip=data) | files_under(repo)) - before
    server_errors = {c: a for c, a in answers.items() if not 200 <= a.status < 500}
    crashes = {c: a for c, a in answers.items() if "crashed the reader" in a.message}
    log = Path(server.env["RESTORE_DATA_DIR"]).parent.joinpath("server.log").read_text()
    alive = server.process.poll() is None
    with server.client(timeout=30) as client:
        health = client.get("/health")
    workers_now = {p for p, c in descendants(server.process.pid).items() if "celery" in c}
    workers_then = {p for p, c in processes.items() if "celery" in c}
    statuses = Counter(a.status for a in answers.values())
    (tmp_path / "answers.json").write_text(json.dumps(answers, indent=1, sort_keys=True))
    print(
        f"malformed corpus: {len(samples)} files in {seconds:.0f} s, "
        f"{len(server_errors)} 5xx, {len(crashes)} crashes, {len(stray)} stray files, "
        f"peak disk per upload {disk.peak / MIB:.1f} MiB of {UPLOAD_LIMIT / MIB:.0f} MiB limit, "
        f"valid upload meanwhile: {uploader.valid_status}; answers {dict(sorted(statuses.items()))}"
    )
    assert not server_errors, server_errors
    assert not crashes, crashes
    assert alive and health.status_code == 200, health.text
    assert workers_now == workers_then  # the embedded worker was never restarted
    assert "Traceback" not in log
    assert not stray, sorted(stray)
    assert disk.peak <= UPLOAD_LIMIT
    assert uploader.valid_status == 201
    accepted_jobs_finish(server, samples, answers)
    log = Path(server.env["RESTORE_DATA_DIR"]).parent.joinpath("server.log").read_text()
    assert "WorkerLostError" not in log and "embedded worker exited" not in log


def accepted_jobs_finish(server: Server, samples: list[Sample], answers: dict[str, Answer]) -> None:
    """A job on each accepted damaged file (and the seeds) completes or fails cleanly."""
    accepted = [s for s in samples if answers[s.case].status == 201]
    kinds = {s.case.split("@")[0]: s for s in accepted if s.case.startswith((*DAMAGED, "seed/"))}
    chosen = list(kinds.values())  # one of each kind of damage to each seed
    outcomes = {}
    with server.client(timeout=60) as client:
        for sample in chosen:
            field = "slide_id" if sample.route == "slides" else "sequence_id"
            body = {field: answers[sample.case].id}
            if sample.route == "slides":
                body |= {"model": "identity"}
            created = client.post("/v1/jobs", json=body)
            assert created.status_code == 202, (sample.case, created.text)
            outcomes[sample.case] = created.json()["id"]
        for case, job_id in outcomes.items():
            done = wait_for_job(client, job_id, timeout_s=300)
            outcomes[case] = (done["state"], done["error"])
    states = Counter(state for state, _ in outcomes.values())
    print(f"{len(accepted)} accepted; jobs on {len(outcomes)} of them: {dict(states)}")
    for case, (state, error) in sorted(outcomes.items()):
        if state != "completed":
            print(f"  {case}: {state} ({error})")
    assert set(states) <= {"completed", "failed"}, outcomes
    assert not any(error and "internal" in str(error) for _, error in outcomes.values())
