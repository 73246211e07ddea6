"""The per-stage seconds of a job as one printed line, shared by the benchmarks."""

from __future__ import annotations

TOTALS = ("wall", "mpx_per_s")


def stage_line(timings: dict[str, float]) -> str:
    """``plan 0.4, classify 1.5, ...``: every stage of a job's timings but the totals."""
    return ", ".join(f"{name} {s:.1f}" for name, s in timings.items() if name not in TOTALS)
