"""What can be checked of the deployment without a container engine (none on CI machines)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import httpx
import pytest
import yaml

from tests.app.server import Server
from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_compose_services_are_complete_and_consistent() -> None:
    services, volumes = COMPOSE["services"], set(COMPOSE.get("volumes") or {})
    assert {"api", "worker", "worker-gpu", "redis", "postgres"} <= set(services)
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE, re.MULTILINE))
    for name, service in services.items():
        assert ("build" in service) != ("image" in service), name
        if "build" in service:
            assert service["build"]["target"] in targets, name
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, (name, dependency)
            assert "healthcheck" in services[dependency], dependency
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0]
            assert source in volumes or source.startswith((".", "/")), (name, mount)
    assert "--appendonly" in services["redis"]["command"]  # the broker keeps its queue


def test_every_restore_variable_in_compose_is_a_real_setting() -> None:
    fields = {f"RESTORE_{name.upper()}" for name in Settings.model_fields}
    for name, service in COMPOSE["services"].items():
        for variable in _environment(service):
            if variable.startswith("RESTORE_"):
                assert variable in fields, (name, variable)


def test_every_path_the_dockerfile_copies_exists() -> None:
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in shlex.split(line)[1:-1]:
                assert (ROOT / source).exists(), source


def test_the_api_image_is_healthy_without_a_worker(tmp_path: Path) -> None:
    """The api target's HEALTHCHECK asks /health/live, which needs no worker (compose scales
    workers apart from the API); /health itself reports the workers."""
    check = re.search(r"FROM base AS api.*?HEALTHCHECK.*?CMD (.*?)\n", DOCKERFILE, re.S)
    assert check and "/health/live" in check.group(1)
    env = {"RESTORE_DATA_DIR": str(tmp_path / "var"), "RESTORE_EMBEDDED_WORKER": "false"}
    server = Server(env, tmp_path / "api.log", args=("--no-worker",))
    server.start(wait_for_worker=False)
    try:
        assert httpx.get(f"{server.url}/health/live", timeout=10).status_code == 200
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 503
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("base", "python"),
    [
        ("python:3.11-slim-bookworm", "3.11"),
        ("nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04", "3.12"),
    ],
)
def test_each_image_base_has_a_python_the_project_supports(base: str, python: str) -> None:
    """The CPU image's Python, and Ubuntu 24.04's python3 in the GPU image, satisfy
    requires-python, and wheels are installed inside each image (pip install at build)."""
    bases = {COMPOSE["services"]["worker-gpu"]["build"]["args"]["BASE"]}
    bases |= set(re.findall(r"^ARG BASE=(\S+)$", DOCKERFILE, re.MULTILINE))
    assert base in bases
    assert "pip install ." in DOCKERFILE  # no wheel built elsewhere is copied in
    project = (ROOT / "pyproject.toml").read_text()
    least = re.search(r'requires-python = ">=(\d+)\.(\d+)"', project)
    assert least and tuple(map(int, python.split("."))) >= (int(least[1]), int(least[2]))
