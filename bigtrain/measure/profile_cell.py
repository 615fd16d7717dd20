"""Profile a built cell after its timed window and leave its artifacts: the one entry the
step-time protocol and a data-parallel rank call. A profile that fails is an outcome with the
reason, never an exception: the cell's timing record stands either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigtrain.measure.profile_settings import ProfileSettings

OK, FAILED, UNSUPPORTED = "ok", "failed", "unsupported"
TRACE_NAME = "trace.json.gz"


def rank_trace_name(rank: int) -> str:
    """The trace a data-parallel rank leaves (`trace.rank<R>.json.gz`)."""
    return f"trace.rank{rank}.json.gz"


@dataclass(frozen=True, kw_only=True)
class ProfileOutcome:
    """The record's profile fields: status, reason, path (relative to the run) and summary."""

    status: str
    reason: str | None = None
    path: str | None = None
    summary: dict[str, Any] | None = None

    def record_fields(self) -> dict[str, Any]:
        """The record fields of bigtrain.results.fields' profile block."""
        return {"profile_status": self.status, "profile_reason": self.reason,
                "profile_path": self.path, "profile_summary": self.summary}


def _inside(run_dir: Path, folder: Path) -> bool:
    base = run_dir.resolve()
    return base in folder.resolve().parents


def profile_steps_within(window_s: float, step_s: float) -> int:
    """The most profiled steps that take about as long as the timed window did (at least 1), so
    that a slow cell's profile adds about one window, not `--profile-steps` slow steps."""
    return max(1, int(window_s // step_s)) if step_s > 0 else 1


def profile_built(built: Any, step: Any, settings: ProfileSettings, *, cell_id: str,
                  rank: int | None = None, world_size: int = 1,
                  max_steps: int | None = None) -> ProfileOutcome:
    """Run the profiled window of `step` (at most `max_steps` steps) and write the cell's folder.
    `rank` (data-parallel): every rank writes its own trace; rank 0 also the ops table and
    summary (its view of the step), naming every rank's trace. `max_steps` must be the same on
    every rank (their collectives must meet)."""
    folder = Path(settings.folder)
    if not _inside(Path(settings.run_dir), folder):
        return ProfileOutcome(status=FAILED, reason=f"profile folder {settings.relative!r} is not "
                                                    f"inside the run folder")
    try:
        return _profile(built, step, settings, folder, cell_id=cell_id, rank=rank,
                        world_size=world_size, max_steps=max_steps)
    except Exception as exc:  # noqa: BLE001 - profiling must never cost the timing record
        reason = f"{type(exc).__name__}: {exc}"[:500]
        return ProfileOutcome(status=FAILED, reason=reason)


def _profile(built: Any, step: Any, settings: ProfileSettings, folder: Path, *, cell_id: str,
             rank: int | None, world_size: int, max_steps: int | None) -> ProfileOutcome:
    from bigtrain.measure import profile_artifacts as artifacts
    from bigtrain.measure.profile_capture import capture_window

    trace = TRACE_NAME if rank is None else rank_trace_name(rank)
    capture = capture_window(step, built.device, settings, trace_name=trace[:-3],
                             max_steps=max_steps)
    notes = artifacts.gzip_trace(capture.trace_json_path, folder / trace)
    if rank not in (None, 0):
        return ProfileOutcome(status=OK, path=settings.relative)
    rows = artifacts.op_rows(capture)
    artifacts.write_ops(folder, rows)
    snapshot, timeline, offline = _memory_files(capture, folder)
    if timeline is not None:
        notes = {**notes, "memory_timeline_offline": offline}
    notes = {**notes, "steps_requested": settings.request.steps}
    ranks = [rank_trace_name(r) for r in range(world_size)] if rank is not None else []
    full = artifacts.summary(capture, rows, cell_id=cell_id,
                             trace=None if notes.get("trace_dropped") else trace,
                             trace_notes=notes, memory_snapshot=snapshot,
                             memory_timeline=timeline, rank_traces=ranks)
    artifacts.write_summary(folder, full)
    return ProfileOutcome(status=OK, path=settings.relative,
                          summary=artifacts.record_summary(full))


def _memory_files(capture: Any, folder: Path) -> tuple[str | None, str | None, bool]:
    """The CUDA memory snapshot's file name, its HTML timeline's (None on the CPU), and whether
    that page opens without the network."""
    if capture.memory_snapshot_path is None:
        return None, None, False
    from bigtrain.measure.memory_timeline import is_offline, write_memory_timeline

    html = write_memory_timeline(capture.memory_snapshot_path, folder / "memory_timeline.html")
    if html is None:
        return capture.memory_snapshot_path.name, None, False
    return (capture.memory_snapshot_path.name, html.name,
            is_offline(html.read_text(encoding="utf-8")))
