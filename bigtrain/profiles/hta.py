"""Holistic Trace Analysis over a cell's CUDA traces, when the `profile` extra is installed.

HTA (`pip install 'bigtrain[profile]'`, package `HolisticTraceAnalysis`, module `hta`) reads the
Kineto traces and says how the GPU spent the profiled window: the temporal breakdown (compute,
communication, memory, idle), the idle-time breakdown (waiting on the host vs on another kernel),
the kernel breakdown, and for data-parallel cells how much communication overlapped computation.

Imported only here and only on demand: without the extra, or for a trace with no device activity
(a CPU cell), `analyse` returns a result whose `note` says what is needed. HTA's tables are
turned into plain rows of text and numbers here, so nothing downstream depends on its types.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigtrain.profiles.load import CellProfile

NEEDS_EXTRA = ("HTA analysis needs the profile extra (pip install 'bigtrain[profile]', which "
               "installs HolisticTraceAnalysis)")
NEEDS_CUDA = ("HTA analysis needs CUDA traces: this cell's trace has no device activity "
              "(a CPU cell)")
#: What HTA is asked, and the name each answer is kept under.
ANALYSES = ("temporal_breakdown", "idle_time_breakdown", "kernel_breakdown", "comm_comp_overlap")


@dataclass(frozen=True)
class HtaResult:
    """HTA's answers for one cell, as rows (column -> value), or why there are none."""

    cell_id: str
    tables: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    note: str | None = None
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def ran(self) -> bool:
        return bool(self.tables)


def hta_available() -> bool:
    """True when the `hta` module (HolisticTraceAnalysis) can be imported."""
    try:
        return importlib.util.find_spec("hta") is not None
    except (ImportError, ValueError):
        return False


def has_device_activity(profile: CellProfile) -> bool:
    """The trace holds GPU kernels: the summary counts them, or the ops table has device time."""
    kernels = profile.summary.get("device_kernels_per_step")
    if isinstance(kernels, (int, float)) and not isinstance(kernels, bool) and kernels > 0:
        return True
    return profile.time_basis == "device"


def trace_files(profile: CellProfile) -> list[Path]:
    """The cell's trace files inside its folder: the summary's `trace`, and per-rank traces
    (`trace*.json.gz`, `rank*/trace*.json.gz`) of a data-parallel cell."""
    found: list[Path] = []
    named = profile.relative_file("trace")
    if named is not None:
        found.append(named)
    for pattern in ("trace*.json.gz", "rank*/trace*.json.gz"):
        for path in sorted(profile.folder.glob(pattern)):
            resolved = Path(os.path.realpath(path))
            base = Path(os.path.realpath(profile.folder))
            if base in resolved.parents and resolved not in found:
                found.append(resolved)
    return found


def analyse(profile: CellProfile, *, data_parallel: bool | None = None) -> HtaResult:
    """Run HTA over the cell's traces, or say why not (no extra, no CUDA trace, no trace)."""
    if not hta_available():
        return HtaResult(cell_id=profile.cell_id, note=NEEDS_EXTRA)
    if not has_device_activity(profile):
        return HtaResult(cell_id=profile.cell_id, note=NEEDS_CUDA)
    traces = trace_files(profile)
    if not traces:
        return HtaResult(cell_id=profile.cell_id, note="no trace file in the profile folder")
    try:
        trace_analysis = importlib.import_module("hta.trace_analysis")
    except Exception as exc:  # noqa: BLE001 - a broken install is a note, not a crash
        return HtaResult(cell_id=profile.cell_id, note=f"{NEEDS_EXTRA}: importing hta failed: {exc}")
    if data_parallel is None:
        world = profile.axes.get("world_size")
        data_parallel = len(traces) > 1 or (str(world).isdigit() and int(str(world)) > 1)
    # HTA reads every trace file of a folder: give it a folder of the traces alone (the cell
    # folder also holds summary.json, which it would try to parse as a trace).
    scratch = Path(tempfile.mkdtemp(prefix="bigtrain-hta-"))
    try:
        for i, trace in enumerate(traces):
            os.symlink(trace, scratch / f"rank{i}-{trace.name}")
        try:
            analyzer = trace_analysis.TraceAnalysis(trace_dir=str(scratch))
        except Exception as exc:  # noqa: BLE001 - HTA's parse errors are its own types
            return HtaResult(cell_id=profile.cell_id, note=f"HTA could not read the trace: {exc}")
        tables: dict[str, list[dict[str, Any]]] = {}
        errors: dict[str, str] = {}
        calls = {
            "temporal_breakdown": lambda: analyzer.get_temporal_breakdown(visualize=False),
            "idle_time_breakdown": lambda: analyzer.get_idle_time_breakdown(visualize=False),
            "kernel_breakdown": lambda: analyzer.get_gpu_kernel_breakdown(visualize=False),
        }
        if data_parallel:
            calls["comm_comp_overlap"] = lambda: analyzer.get_comm_comp_overlap(visualize=False)
        for name, call in calls.items():
            try:
                tables[name] = _rows(call())
            except Exception as exc:  # noqa: BLE001 - one analysis failing leaves the others
                errors[name] = f"{type(exc).__name__}: {exc}"
        return HtaResult(cell_id=profile.cell_id, tables=tables, errors=errors,
                         note=None if tables else "every HTA analysis failed")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _rows(answer: Any) -> list[dict[str, Any]]:
    """HTA answers with a DataFrame or a tuple of them: the first frame's rows as plain dicts."""
    if isinstance(answer, tuple):
        answer = next((a for a in answer if hasattr(a, "to_dict")), None)
    if answer is None or not hasattr(answer, "to_dict"):
        return []
    rows = answer.reset_index(drop=True).to_dict(orient="records")
    return [{str(k): _plain(v) for k, v in row.items()} for row in rows]


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    value = item() if callable(item) else value
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
