"""Find installed models: every ``<dir>/<name>/manifest.json`` under the configured folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from models.manifest import MANIFEST_NAME, ModelManifest, file_sha256, load_manifest
from workers.errors import ModelUnavailable


@dataclass(frozen=True)
class InstalledModel:
    """A manifest and the folder it came from."""

    manifest: ModelManifest
    directory: Path

    @property
    def onnx_path(self) -> Path:
        """The ONNX file the manifest describes."""
        return self.directory / self.manifest.file

    def verify(self) -> None:
        """Check that the ONNX file exists and matches the manifest's sha256."""
        if not self.onnx_path.is_file():
            raise ModelUnavailable(f"model {self.manifest.name}: {self.onnx_path.name} is missing")
        actual = file_sha256(self.onnx_path)
        if actual != self.manifest.sha256:
            raise ModelUnavailable(
                f"model {self.manifest.name}: sha256 {actual} does not match the manifest"
            )


def discover(directories: list[Path]) -> dict[str, InstalledModel]:
    """All valid manifests by model name; later folders override earlier ones."""
    found: dict[str, InstalledModel] = {}
    for directory in directories:
        for path in sorted(Path(directory).glob(f"*/{MANIFEST_NAME}")):
            try:
                manifest = load_manifest(path)
            except (ValidationError, ValueError):
                continue
            found[manifest.name] = InstalledModel(manifest, path.parent)
    return found


def get_model(directories: list[Path], name: str) -> InstalledModel:
    """One installed model by name."""
    models = discover(directories)
    if name not in models:
        installed = ", ".join(sorted(models)) or "none"
        raise ModelUnavailable(f"model {name!r} is not installed (installed: {installed})")
    return models[name]


def discover_one(directory: str, sha256: str) -> InstalledModel:
    """The model in one folder, checked to be the version (sha256) that was asked for."""
    model = InstalledModel(load_manifest(Path(directory) / MANIFEST_NAME), Path(directory))
    if model.manifest.sha256 != sha256:
        raise ModelUnavailable(f"model {model.manifest.name} changed on disk; retry the job")
    return model
