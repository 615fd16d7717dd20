"""Synthetic profiled runs, written to the profile artifact contract (bigtrain/profiles/load.py)
from seeded numbers, so every share, ranking and bound in the tests can be worked out by hand.

A run folder is written with the real RunWriter (tests/test_compare_support.py); each profiled
cell gets `profiles/<cell>/` with summary.json, ops.csv, ops.parquet and a small gzipped Chrome
trace, and its records carry the contract's profile fields (in `extra` until the field table
declares them). No tests here.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from test_compare_support import repeated_cell, write_run

from bigtrain.profiles.load import OP_COLUMNS

#: A small MLP step: (op, phase, category, calls per step, host µs per step, FLOPs, shapes)
MLP_OPS = (
    ("aten::addmm", "forward", "matmul/conv", 2, 40.0, 2 * 64 * 10 * 20 * 2, "[[20], [64, 10], [10, 20]]"),
    ("aten::relu", "forward", "elementwise/activation", 1, 8.0, 0, "[[64, 20]]"),
    ("aten::mse_loss", "forward", "loss", 1, 6.0, 0, "[[64, 1], [64, 1]]"),
    ("aten::mm", "backward", "matmul/conv", 4, 60.0, 4 * 64 * 10 * 20 * 2, "[[64, 20], [20, 10]]"),
    ("aten::threshold_backward", "backward", "elementwise/activation", 1, 9.0, 0, "[[64, 20], [64, 20]]"),
    ("aten::_foreach_mul_", "optimizer", "optimizer", 1, 20.0, 0, "[]"),
    ("aten::_foreach_add_", "optimizer", "optimizer", 2, 25.0, 0, "[]"),
    ("aten::copy_", "other", "copy/memory", 3, 5.0, 0, "[[64, 10], [64, 10]]"),
)
BN_OPS = (
    ("aten::native_batch_norm", "forward", "normalization", 1, 30.0, 0, "[[64, 20], [20], [20]]"),
    ("aten::native_batch_norm_backward", "backward", "normalization", 1, 90.0, 0,
     "[[64, 20], [64, 20], [20]]"),
)


def op_rows(ops: Sequence[tuple], *, scale: Mapping[str, float] | None = None,
            seed: int = 0, device: bool = False, jitter: float = 0.0) -> list[dict[str, Any]]:
    """Ops-table rows; `scale` multiplies the time of named ops; `jitter` scatters every time by
    +-jitter (relative, seeded)."""
    rng = random.Random(seed)
    scale = scale or {}
    rows = []
    for op, phase, category, calls, host_us, flops, shapes in ops:
        us = host_us * scale.get(op, 1.0) * (1 + rng.uniform(-jitter, jitter))
        rows.append({"op": op, "phase": phase, "category": category, "calls_per_step": calls,
                     "self_host_us_per_step": us,
                     "self_device_us_per_step": us * 0.5 if device else None,
                     "flops_per_step": flops or None, "input_shapes": shapes,
                     "share_of_step": None})
    total = sum(r["self_host_us_per_step"] for r in rows)
    for row in rows:
        row["share_of_step"] = row["self_host_us_per_step"] / total
    return rows


def write_profile_folder(folder: Path, cell_id: str, rows: Sequence[Mapping[str, Any]], *,
                         step_time_s_profiled: float | None = None, device: bool = False,
                         parquet: bool = True, memory_snapshot: str | None = None) -> Path:
    """One cell's profile folder, as the capture side writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "ops.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(OP_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in OP_COLUMNS})
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([dict(r) for r in rows]), folder / "ops.parquet")
    total_us = sum(r["self_host_us_per_step"] for r in rows)
    launches: dict[str, float] = {}
    for row in rows:
        launches[row["phase"]] = launches.get(row["phase"], 0) + row["calls_per_step"]
    by_category: dict[str, float] = {}
    by_phase: dict[str, float] = {}
    for row in rows:
        share = row["self_host_us_per_step"] / total_us
        by_category[row["category"]] = by_category.get(row["category"], 0) + share
        by_phase[row["phase"]] = by_phase.get(row["phase"], 0) + share
    summary = {
        "schema": 1, "cell_id": cell_id, "steps_profiled": 5,
        "step_time_s_profiled": (step_time_s_profiled if step_time_s_profiled is not None
                                 else total_us * 1.25 / 1e6),
        "launches_per_step_by_phase": launches,
        "device_kernels_per_step": sum(launches.values()) if device else None,
        "top_ops": [r["op"] for r in sorted(rows, key=lambda r: -r["self_host_us_per_step"])[:5]],
        "share_by_category": by_category, "share_by_phase": by_phase,
        "memory_snapshot": memory_snapshot, "trace": "trace.json.gz",
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    events = [{"name": f"## {phase} ##", "ph": "X", "ts": i * 100, "dur": 90, "pid": 1, "tid": 1}
              for i, phase in enumerate(("forward", "backward", "optimizer"))]
    with gzip.open(folder / "trace.json.gz", "wt") as handle:
        json.dump({"traceEvents": events}, handle)
    return folder


def profiled_run(root: Path, run_id: str, cells: Mapping[str, Mapping[str, Any]]) -> Path:
    """A run folder whose cells are profiled. `cells`: cell_id -> {"rows": ops rows,
    "step_s": timed median, "axes": axis overrides, "status": profile status (ok),
    "record": other record fields}; a cell without "rows" has records but no profile."""
    records = []
    for cell_id, spec in cells.items():
        status = spec.get("status", "ok" if "rows" in spec else "none")
        folder = f"profiles/{cell_id}"
        for record in repeated_cell(run_id, cell_id, spec.get("step_s", 0.001), repeats=3):
            extra = {"profile_status": status,
                     "profile_reason": spec.get("reason"),
                     "profile_path": folder if status == "ok" else None,
                     "profile_summary": None}
            records.append(dataclasses.replace(record, **spec.get("axes", {}),
                                               **spec.get("record", {}), extra=extra))
    run_dir = write_run(root, run_id, records)
    for cell_id, spec in cells.items():
        if "rows" in spec and spec.get("status", "ok") == "ok":
            write_profile_folder(run_dir / "profiles" / cell_id, cell_id, spec["rows"],
                                 device=spec.get("device", False),
                                 step_time_s_profiled=spec.get("step_s_profiled"))
    return run_dir
