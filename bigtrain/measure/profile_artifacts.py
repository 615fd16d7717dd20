"""Writing a profiled window to the profile artifact contract (`bigtrain.profiles.load`): the
gzipped Chrome trace (bounded in size), the ops table as CSV and Parquet, `summary.json`, and the
compact summary the cell's record carries.

Plain Python plus pyarrow (no torch, no pandas): it turns a `ProfileCapture` into files.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bigtrain.common.op_categories import CATEGORIES

# The contract's reader owns its names (torch-free, pandas-free: both sides import it).
from bigtrain.common.profile_format import OP_COLUMNS, SUMMARY_SCHEMA

#: A gzipped trace above this is cut to its last profiled step (then, if still above, dropped).
MAX_TRACE_BYTES = 4 << 20
TOP_OPS = 5
#: Shares in the record's compact summary are rounded to this many digits.
_DIGITS = 4


def op_rows(capture: Any) -> list[dict[str, Any]]:
    """The ops table: one row per (op, phase, input shapes), per-step figures, largest first."""
    steps = capture.steps
    step_us = _median_step_us(capture)
    device = capture.time_basis == "device"
    rows = []
    for op in capture.ops:
        host, dev = op.self_host_us / steps, op.self_device_us / steps
        basis = dev if device else host
        rows.append({"op": op.op, "phase": op.phase, "category": op.category,
                     "calls_per_step": op.calls / steps, "self_host_us_per_step": host,
                     "self_device_us_per_step": dev if device else None,
                     "flops_per_step": op.flops / steps if op.flops else None,
                     "input_shapes": op.input_shapes,
                     "share_of_step": basis / step_us if step_us else None})
    rows.sort(key=lambda r: (-(r["self_device_us_per_step"] if device
                               else r["self_host_us_per_step"]), r["op"], r["phase"]))
    return rows


def _median_step_us(capture: Any) -> float | None:
    from bigtrain.measure.profile_capture import median_step_s

    median = median_step_s(capture)
    return median * 1e6 if median else None


def summary(capture: Any, rows: Sequence[Mapping[str, Any]], *, cell_id: str, trace: str | None,
            trace_notes: Mapping[str, Any], memory_snapshot: str | None = None,
            memory_timeline: str | None = None, rank_traces: Sequence[str] = ()) -> dict[str, Any]:
    """summary.json: the contract's keys, plus how the window was taken."""
    from bigtrain.measure.profile_capture import LAUNCH_UNIT, median_step_s

    basis = "self_device_us_per_step" if capture.time_basis == "device" else "self_host_us_per_step"
    total = sum(r[basis] or 0.0 for r in rows) or 1.0
    by_category: dict[str, float] = {}
    by_phase: dict[str, float] = {}
    for row in rows:
        share = (row[basis] or 0.0) / total
        by_category[row["category"]] = by_category.get(row["category"], 0.0) + share
        by_phase[row["phase"]] = by_phase.get(row["phase"], 0.0) + share
    steps = capture.steps
    kernels = capture.kernels_by_phase
    return {
        "schema": SUMMARY_SCHEMA, "cell_id": cell_id, "steps_profiled": steps,
        "step_time_s_profiled": median_step_s(capture),
        "launches_per_step_by_phase": {p: n / steps for p, n in
                                       sorted(capture.launches_by_phase.items())},
        "launch_unit": LAUNCH_UNIT,
        "device_kernels_per_step": (sum(kernels.values()) / steps) if kernels is not None else None,
        "device_kernels_per_step_by_phase": ({p: n / steps for p, n in sorted(kernels.items())}
                                             if kernels is not None else None),
        "top_ops": [r["op"] for r in rows[:TOP_OPS]],
        "share_by_category": {c: by_category[c] for c in CATEGORIES if c in by_category},
        "share_by_phase": dict(sorted(by_phase.items())),
        "time_basis": capture.time_basis, "device": capture.device,
        "record_shapes": capture.record_shapes,
        "memory_snapshot": memory_snapshot, "memory_timeline": memory_timeline,
        "trace": trace, "rank_traces": list(rank_traces), **trace_notes,
    }


def record_summary(full: Mapping[str, Any]) -> dict[str, Any]:
    """The compact summary a cell's record carries (`profile_summary`): top ops, shares by
    category and phase, launches per step by phase."""
    def rounded(values: Mapping[str, float] | None) -> dict[str, float] | None:
        return None if values is None else {k: round(v, _DIGITS) for k, v in values.items()}

    return {"top_ops": list(full["top_ops"]),
            "share_by_category": rounded(full["share_by_category"]),
            "share_by_phase": rounded(full["share_by_phase"]),
            "launches_per_step_by_phase": rounded(full["launches_per_step_by_phase"]),
            "device_kernels_per_step": full["device_kernels_per_step"],
            "step_time_s_profiled": full["step_time_s_profiled"],
            "steps_profiled": full["steps_profiled"], "time_basis": full["time_basis"]}


def write_ops(folder: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """ops.csv and ops.parquet (the same table)."""
    with (folder / "ops.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(OP_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in OP_COLUMNS})
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("op", pa.string()), ("phase", pa.string()), ("category", pa.string()),
                        ("calls_per_step", pa.float64()), ("self_host_us_per_step", pa.float64()),
                        ("self_device_us_per_step", pa.float64()),
                        ("flops_per_step", pa.float64()), ("input_shapes", pa.string()),
                        ("share_of_step", pa.float64())])
    table = pa.Table.from_pylist([{k: row[k] for k in OP_COLUMNS} for row in rows], schema=schema)
    pq.write_table(table, folder / "ops.parquet")


def gzip_trace(source: Path, target: Path, *, max_bytes: int = MAX_TRACE_BYTES) -> dict[str, Any]:
    """Compress the exported Chrome trace `source` into `target` and remove `source`. A trace
    above `max_bytes` gzipped is cut to its last profiled step (the schedule's `ProfilerStep#`
    range, metadata kept); one still above is not kept. Returns notes for the summary."""
    _compress(source, target)
    notes: dict[str, Any] = {"trace_trimmed": False}
    if target.stat().st_size > max_bytes:
        with source.open(encoding="utf-8") as handle:
            data = json.load(handle)
        data["traceEvents"] = _last_step_events(data.get("traceEvents") or [])
        source.write_text(json.dumps(data), encoding="utf-8")
        _compress(source, target)
        notes["trace_trimmed"] = "cut to the last profiled step to stay under the size bound"
    source.unlink()
    if target.stat().st_size > max_bytes:
        notes["trace_dropped"] = (f"{target.stat().st_size} bytes gzipped even for one step, "
                                  f"over the bound of {max_bytes}")
        target.unlink()
    else:
        notes["trace_bytes"] = target.stat().st_size
    return notes


def _compress(source: Path, target: Path) -> None:
    temporary = target.with_suffix(".tmp")
    # No name or time in the gzip header: the same trace compresses to the same bytes.
    with source.open("rb") as raw, temporary.open("wb") as sink, \
            gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=6, mtime=0) as out:
        while chunk := raw.read(1 << 20):
            out.write(chunk)
    os.replace(temporary, target)


def _last_step_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    steps = [e for e in events if str(e.get("name", "")).startswith("ProfilerStep#")
             and isinstance(e.get("ts"), (int, float))]
    if not steps:
        return [e for e in events if e.get("ph") == "M"]
    last = max(steps, key=lambda e: e["ts"])
    start, end = last["ts"], last["ts"] + (last.get("dur") or 0)
    return [e for e in events if e.get("ph") == "M"
            or (isinstance(e.get("ts"), (int, float)) and start <= e["ts"] <= end)]


def write_summary(folder: Path, data: Mapping[str, Any]) -> None:
    """summary.json, replaced atomically (a reader never sees half of it)."""
    temporary = folder / "summary.json.tmp"
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=False),
                         encoding="utf-8")
    os.replace(temporary, folder / "summary.json")
