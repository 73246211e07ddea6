"""Deleting job outputs and uploads: on request and by age, never what an active job needs."""

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers import retention
from workers.errors import Conflict
from workers.layout import job_paths, sequence_paths, slide_paths
from workers.settings import Settings
from workers.store import Store

DAY_S = 86_400.0
NOW = time.time()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var", retention_days=7)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    settings.data_dir.mkdir(parents=True)
    store = Store(settings.resolved_database_url)
    yield store
    store.dispose()


def add_slide(store: Store, settings: Settings, age_days: float) -> str:
    slide_id = uuid.uuid4().hex
    record = {"id": slide_id, "filename": "s.svs", "sha256": "0" * 64, "size_bytes": 1}
    record.update(path="s.svs", info={}, created_at=NOW - age_days * DAY_S)
    store.add_slide(record)
    root = slide_paths(settings, slide_id).upload_dir
    root.mkdir(parents=True)
    (root / "s.svs").write_bytes(b"slide")
    return slide_id


def add_sequence(store: Store, settings: Settings, age_days: float) -> str:
    sequence_id = uuid.uuid4().hex
    record = {"id": sequence_id, "filename": "f.tif", "sha256": "0" * 64, "size_bytes": 1}
    record.update(metadata={}, info={}, created_at=NOW - age_days * DAY_S)
    store.add_sequence(record)
    sequence_paths(settings, sequence_id).frames.mkdir(parents=True)
    return sequence_id


def add_job(
    store: Store,
    settings: Settings,
    state: str,
    age_days: float,
    slide_id: str = "gone",
    **record: object,
) -> str:
    job_id = uuid.uuid4().hex
    at = NOW - age_days * DAY_S
    ended = {"finished_at": at} if state in ("completed", "failed", "cancelled") else {}
    params = record.pop("params", {"models": ["identity"]})
    store.add_job(
        {"id": job_id, "slide_id": slide_id, "model": "identity", "params": params}
        | {"state": state, "created_at": at, **ended, **record}
    )
    paths = job_paths(settings, job_id)
    (paths.output / "0").mkdir(parents=True)
    paths.tile_table.write_text("x,y\n")
    paths.ome_tiff.write_bytes(b"tiff")
    return job_id


def test_a_finished_jobs_output_is_deleted_and_marked(store: Store, settings: Settings) -> None:
    job_id = add_job(store, settings, "completed", age_days=0)
    retention.delete_job_output(store, settings, job_id)
    assert not job_paths(settings, job_id).root.exists()
    deleted_at = store.get_job(job_id)["output_deleted_at"]
    assert deleted_at == pytest.approx(time.time(), abs=5)
    retention.delete_job_output(store, settings, job_id)  # again: harmless, first time kept
    assert store.get_job(job_id)["output_deleted_at"] == deleted_at


@pytest.mark.parametrize("state", ["queued", "running", "finalizing"])
def test_an_active_jobs_output_is_kept(store: Store, settings: Settings, state: str) -> None:
    job_id = add_job(store, settings, state, age_days=30)
    with pytest.raises(Conflict, match=state):
        retention.delete_job_output(store, settings, job_id)
    assert job_paths(settings, job_id).output.is_dir()
    assert store.get_job(job_id)["output_deleted_at"] is None


def test_sweep_deletes_what_is_older_than_the_retention(store: Store, settings: Settings) -> None:
    old = {s: add_job(store, settings, s, age_days=8) for s in ("completed", "failed", "cancelled")}
    recent = add_job(store, settings, "completed", age_days=6)
    old_slide, recent_slide = add_slide(store, settings, 8), add_slide(store, settings, 6)
    old_seq, recent_seq = add_sequence(store, settings, 8), add_sequence(store, settings, 6)

    swept = retention.sweep(store, settings, now=NOW)

    assert sorted(swept.jobs) == sorted(old.values())
    assert (swept.slides, swept.sequences) == ([old_slide], [old_seq])
    for job_id in old.values():
        assert not job_paths(settings, job_id).root.exists()
        assert store.get_job(job_id)["output_deleted_at"] is not None
    assert job_paths(settings, recent).output.is_dir()
    assert store.get_job(recent)["output_deleted_at"] is None
    assert not slide_paths(settings, old_slide).root.exists()
    assert not sequence_paths(settings, old_seq).root.exists()
    assert [s["id"] for s in store.list_slides()] == [recent_slide]
    assert [s["id"] for s in store.list_sequences()] == [recent_seq]
    assert slide_paths(settings, recent_slide).upload_dir.is_dir()
    assert sequence_paths(settings, recent_seq).frames.is_dir()
    assert retention.sweep(store, settings, now=NOW) == retention.Swept()  # nothing more


def test_sweep_keeps_everything_an_active_job_needs(store: Store, settings: Settings) -> None:
    slide, reference = add_slide(store, settings, 30), add_slide(store, settings, 30)
    sequence = add_sequence(store, settings, 30)
    running = add_job(
        store,
        settings,
        "running",
        age_days=30,
        slide_id=slide,
        params={"models": ["identity"], "reference_slide_id": reference},
    )
    queued = add_job(store, settings, "queued", age_days=30, slide_id=None, sequence_id=sequence)

    assert retention.sweep(store, settings, now=NOW) == retention.Swept()
    for job_id in (running, queued):
        assert job_paths(settings, job_id).output.is_dir()
    assert {s["id"] for s in store.list_slides()} == {slide, reference}
    assert [s["id"] for s in store.list_sequences()] == [sequence]


def test_retention_zero_keeps_everything(store: Store, settings: Settings) -> None:
    job_id = add_job(store, settings, "completed", age_days=10_000)
    add_slide(store, settings, 10_000)
    keep = settings.model_copy(update={"retention_days": 0})
    assert retention.sweep(store, keep, now=NOW) == retention.Swept()
    assert job_paths(settings, job_id).output.is_dir() and store.list_slides()


def test_command_line_sweeps_once_for_cron(store: Store, settings: Settings) -> None:
    old = add_job(store, settings, "completed", age_days=3)
    recent = add_job(store, settings, "completed", age_days=1)
    env = {**os.environ, "RESTORE_DATA_DIR": str(settings.data_dir)}
    env.pop("RESTORE_RETENTION_DAYS", None)
    command = [sys.executable, "-m", "workers.retention"]
    off = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "retention is off" in off.stdout + off.stderr

    run = subprocess.run(
        [*command, "--days", "2"], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(run.stdout) == {"jobs": [old], "slides": [], "sequences": []}
    assert store.get_job(recent)["output_deleted_at"] is None


@pytest.mark.parametrize("policy", ["outputs", "keep", "refuse"])
def test_deleting_a_slide_follows_the_input_deletion_setting(
    tmp_path: Path, test_models: Path, pyramid_tiff: Path, policy: str
) -> None:
    from models.registry import get_model
    from tests.fixtures import run_job
    from workers.input_deletion import delete_input
    from workers.planning import plan_params
    from workers.sandbox import inspect_upload

    settings = Settings(
        data_dir=tmp_path, models_dirs=[test_models], region_px=512, input_deletion=policy
    )
    store = Store(settings.resolved_database_url)
    folder = settings.slides_dir / "s1"
    folder.mkdir(parents=True)
    inspected = inspect_upload(str(pyramid_tiff), str(folder), (2**32, 10**8, 1000.0), 10**9)
    record = {"filename": "x.tif", "sha256": "0" * 64, "size_bytes": 1, **inspected}
    store.add_slide({"id": "s1", **record})
    manifest = get_model([test_models], "identity").manifest
    params = plan_params((1500, 1200), [manifest], settings, skip_background=False)
    for job_id in ("done", "running"):
        store.add_job({"id": job_id, "slide_id": "s1", "model": "identity", "params": params})
    run_job(store, settings, "done")
    store.transition("running", ("queued",), "running")
    with pytest.raises(Conflict, match="read by running job running"):
        delete_input(store, settings, "slide", "s1")  # never under an active job
    store.transition("running", ("running",), "cancelled")
    output = job_paths(settings, "done").output
    if policy == "refuse":
        with pytest.raises(Conflict, match="delete them first"):
            delete_input(store, settings, "slide", "s1")
        assert output.exists()
        return
    removed = delete_input(store, settings, "slide", "s1")
    assert not folder.exists()
    assert output.exists() == (policy == "keep")
    assert set(removed) == (set() if policy == "keep" else {"done", "running"})  # cancelled too
    assert (store.get_job("done")["output_deleted_at"] is None) == (policy == "keep")
