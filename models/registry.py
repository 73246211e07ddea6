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

    @property
    def psf_path(self) -> Path | None:
        """The ONNX file of the known-PSF graph, where the model has one."""
        graph = self.manifest.psf_graph
        return None if graph is None else self.directory / graph.file

    def verify(self) -> None:
        """Check that the ONNX files exist and match the manifest's sha256."""
        self._check(self.onnx_path, self.manifest.sha256)
        if self.psf_path is not None and self.manifest.psf_graph is not None:
            self._check(self.psf_path, self.manifest.psf_graph.sha256)

    def _check(self, path: Path, sha256: str) -> None:
        if not path.is_file():
            raise ModelUnavailable(f"model {self.manifest.name}: {path.name} is missing")
        actual = file_sha256(path)
        if actual != sha256:
            raise ModelUnavailable(
                f"model {self.manifest.name}: {path.name} sha256 {actual} does not match the "
                "manifest"
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
