"""Where slides and job outputs live on disk, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workers.settings import Settings


@dataclass(frozen=True)
class SlidePaths:
    """The folder of one uploaded slide."""

    root: Path

    @property
    def upload_dir(self) -> Path:
        """Where the uploaded file is stored under the client's (sanitised) file name."""
        return self.root / "upload"

    @property
    def unpacked(self) -> Path:
        """Where a zipped multi-file slide (MRXS) is extracted."""
        return self.root / "unpacked"

    @property
    def thumbnail(self) -> Path:
        """The thumbnail written at upload."""
        return self.root / "thumbnail.png"


def slide_paths(settings: Settings, slide_id: str) -> SlidePaths:
    """The folder of one slide."""
    return SlidePaths(settings.slides_dir / slide_id)


@dataclass(frozen=True)
class SequencePaths:
    """The folder of one uploaded frame sequence."""

    root: Path

    @property
    def upload_dir(self) -> Path:
        """Where the uploaded file waits while its frames are decoded (removed after)."""
        return self.root / "upload"

    @property
    def frames(self) -> Path:
        """The decoded frames: one Zarr array (frame, row, col, channel) of uint8."""
        return self.root / "frames.zarr"

    @property
    def thumbnail(self) -> Path:
        """The first frame, reduced, written at upload."""
        return self.root / "thumbnail.png"


def sequence_paths(settings: Settings, sequence_id: str) -> SequencePaths:
    """The folder of one frame sequence."""
    return SequencePaths(settings.sequences_dir / sequence_id)


@dataclass(frozen=True)
class JobPaths:
    """Where a job keeps its files."""

    root: Path

    @property
    def partial(self) -> Path:
        """The OME-Zarr being written."""
        return self.root / "output.partial.zarr"

    @property
    def output(self) -> Path:
        """The finished OME-Zarr."""
        return self.root / "output.zarr"

    @property
    def tissue(self) -> Path:
        """The tissue mask used to skip background."""
        return self.root / "tissue.npz"

    @property
    def blur_features(self) -> Path:
        """Classified features of each block of blur-map cells, one file per block."""
        return self.root / "blur"

    def block_features(self, block_index: int) -> Path:
        """The features of one block of cells."""
        return self.blur_features / f"{block_index:06d}.npy"

    @property
    def features(self) -> Path:
        """The features of all cells, assembled when the last block is classified."""
        return self.root / "features.npy"

    @property
    def blur_map(self) -> Path:
        """Each cell's decided class, confidence and extent."""
        return self.root / "blur_map.npz"

    @property
    def tile_rows(self) -> Path:
        """The per-tile table, one JSON-lines file per region."""
        return self.root / "tiles"

    @property
    def tile_table(self) -> Path:
        """The per-tile table of a finished job, as CSV."""
        return self.root / "tiles.csv"

    @property
    def tile_table_parquet(self) -> Path:
        """The per-tile table as Parquet, written on the first request."""
        return self.root / "tiles.parquet"

    @property
    def ome_tiff(self) -> Path:
        """The output as a pyramidal OME-TIFF, once requested."""
        return self.root / "output.ome.tiff"

    @property
    def ome_tiff_requested(self) -> Path:
        """Marks that the OME-TIFF export was queued (so a second request does not queue it)."""
        return self.root / "output.ome.tiff.requested"

    @property
    def hook_regions(self) -> Path:
        """What the job's hooks measured, one JSON file per region."""
        return self.root / "hook-regions"

    @property
    def hook_calibration(self) -> Path:
        """Each hook's calibration for this job (from samples of the input)."""
        return self.root / "hooks" / "calibration.json"

    @property
    def registration(self) -> Path:
        """Measured shifts of frame pairs, one JSON file per block of pairs (sequences)."""
        return self.root / "registration"

    def registration_block(self, block_index: int) -> Path:
        """The shifts measured by one block of frame pairs."""
        return self.registration / f"{block_index:06d}.json"

    @property
    def positions(self) -> Path:
        """Each frame's solved (x, y) on the canvas and each pair's residual (sequences)."""
        return self.root / "positions.json"

    @property
    def line_shift(self) -> Path:
        """The bidirectional line shift estimated for a laser-scan sequence."""
        return self.root / "line_shift.json"

    @property
    def frame_rows(self) -> Path:
        """Per-frame measurements of a laser-scan job, one JSON file per batch of frames."""
        return self.root / "frames"

    @property
    def frame_table(self) -> Path:
        """The per-frame table of a finished laser-scan job, as CSV."""
        return self.root / "frames.csv"

    def hook_centroids(self, name: str) -> Path:
        """A hook's points on the output, as GeoJSON (when the hook returns centroids)."""
        return self.root / "hooks" / name / "centroids.geojson"


def job_paths(settings: Settings, job_id: str) -> JobPaths:
    """The folder of one job."""
    return JobPaths(settings.jobs_dir / job_id)
