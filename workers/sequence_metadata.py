"""What a client tells the server about a frame sequence, checked for gaps and contradictions."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workers.engine.scan_layout import ScanLayout
from workers.errors import InvalidInput

CONTINUOUS = "continuous-stage"
LASER = "laser-scan"
CONTINUOUS_FIELDS = ("stage_speed_um_s", "exposure_s", "frame_rate_hz", "scan_axis", "layout")
LASER_FIELDS = ("frame_rate_hz", "bidirectional")


class RowLayout(BaseModel):
    """How the frames of a continuous-stage scan are arranged in rows."""

    model_config = ConfigDict(extra="forbid")

    rows: int = Field(ge=1, le=100_000, description="rows (strips) of the scan")
    frames_per_row: int = Field(ge=1, le=100_000, description="frames taken along each row")
    serpentine: bool = Field(default=False, description="odd rows run right to left")
    row_step_um: float = Field(gt=0, description="stage step from one row to the next")


class SequenceMetadata(BaseModel):
    """The acquisition of a frame sequence (field ``metadata`` of ``POST /v1/sequences``)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["continuous-stage", "laser-scan"]
    pixel_size_um: float = Field(gt=0, le=1000, description="microns per frame pixel")
    stage_speed_um_s: float | None = Field(default=None, gt=0)
    exposure_s: float | None = Field(default=None, gt=0)
    frame_rate_hz: float | None = Field(default=None, gt=0, le=100_000)
    scan_axis: Literal["x", "y"] | None = None
    layout: RowLayout | None = None
    bidirectional: bool | None = None

    @model_validator(mode="after")
    def _complete_and_consistent(self) -> SequenceMetadata:
        needed = CONTINUOUS_FIELDS if self.mode == CONTINUOUS else LASER_FIELDS
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.mode} sequence needs {', '.join(missing)}")
        foreign = set(CONTINUOUS_FIELDS + LASER_FIELDS) - set(needed)
        given = sorted(name for name in foreign if getattr(self, name) is not None)
        if given:
            raise ValueError(f"{', '.join(given)} do not apply to a {self.mode} sequence")
        if self.mode == CONTINUOUS and self.exposure_s and self.frame_rate_hz:
            interval = 1 / self.frame_rate_hz
            if self.exposure_s > interval * (1 + 1e-9):
                raise ValueError(
                    f"exposure_s {self.exposure_s} is longer than the frame interval "
                    f"{interval:.6g} s at {self.frame_rate_hz} Hz"
                )
        return self

    @property
    def motion_blur_px(self) -> float | None:
        """Length of the motion blur in frame pixels: speed x exposure / pixel size."""
        if self.stage_speed_um_s is None or self.exposure_s is None:
            return None
        return self.stage_speed_um_s * self.exposure_s / self.pixel_size_um

    @property
    def step_px(self) -> float | None:
        """Nominal stage travel between consecutive frames of a row, in frame pixels."""
        if self.stage_speed_um_s is None or self.frame_rate_hz is None:
            return None
        return self.stage_speed_um_s / self.frame_rate_hz / self.pixel_size_um

    @property
    def frame_interval_s(self) -> float | None:
        """Seconds between frames."""
        return 1 / self.frame_rate_hz if self.frame_rate_hz else None

    def scan_layout(self, frame_size: tuple[int, int]) -> ScanLayout:
        """The nominal layout of a continuous-stage scan with frames of ``frame_size``."""
        if self.layout is None or self.step_px is None or self.scan_axis is None:
            raise InvalidInput(f"a {self.mode} sequence has no stage layout")
        return ScanLayout(
            rows=self.layout.rows,
            frames_per_row=self.layout.frames_per_row,
            serpentine=self.layout.serpentine,
            step_px=self.step_px,
            row_step_px=self.layout.row_step_um / self.pixel_size_um,
            scan_axis=self.scan_axis,
            frame_size=frame_size,
        )


def check_frames(metadata: SequenceMetadata, count: int, frame_size: tuple[int, int]) -> None:
    """Refuse metadata that does not fit the frames: counts, and overlap for registration."""
    if metadata.mode != CONTINUOUS:
        return
    layout = metadata.scan_layout(frame_size)
    expected = layout.rows * layout.frames_per_row
    if count != expected:
        raise InvalidInput(
            f"the layout has {layout.rows} rows of {layout.frames_per_row} frames "
            f"({expected}), but the file holds {count} frames"
        )
    along, across = frame_size if layout.scan_axis == "x" else frame_size[::-1]
    if layout.frames_per_row > 1 and layout.step_px >= along:
        raise InvalidInput(
            f"frames {layout.step_px:.1f} px apart along the scan axis do not overlap "
            f"(frames are {along} px long); stitching needs overlap"
        )
    if layout.rows > 1 and layout.row_step_px >= across:
        raise InvalidInput(
            f"rows {layout.row_step_px:.1f} px apart do not overlap (frames are {across} px "
            "across); stitching needs overlap"
        )
    if not math.isfinite(layout.step_px) or layout.step_px <= 0:
        raise InvalidInput("the nominal frame step must be a positive number")
