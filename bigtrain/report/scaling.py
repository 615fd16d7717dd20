"""Data-parallel scaling: each world_size N > 1 cell against world_size 1 of the same cell.

Weak scaling (the per-rank batch is fixed), so perfect scaling multiplies throughput by N:
the scaling efficiency is `items_per_s(N) / (N * items_per_s(1))`, computed here, on the
analysing side, from the two records of one source (machine and run). A cell whose world_size 1
twin did not finish ok in that source gets no efficiency. Shown only when some run has a
data-parallel cell that finished ok. Never imports torch or pynvml.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import pandas as pd

from bigtrain.cells.axes import PROGRESS_STYLE, cell_label
from bigtrain.report.data import ReportData
from bigtrain.report.tables import RATIO_MARK, Table

SCALING_COLUMNS = ("source", "cell", "world size", "step median (ms)", "items/s",
                   "communication share (%)", f"speedup {RATIO_MARK}", "scaling efficiency (%)")


def scaling_efficiency(items_per_s_n: float, items_per_s_1: float, world_size: int) -> float:
    """Weak-scaling efficiency: throughput over N ranks against N times one rank's (1.0: ideal)."""
    if world_size < 1 or not items_per_s_1 > 0:
        raise ValueError(f"needs world_size >= 1 and a positive one-rank throughput, got "
                         f"{world_size} and {items_per_s_1}")
    return items_per_s_n / (world_size * items_per_s_1)


def _config_label(record: Any) -> str:
    axes = {k: v for k, v in record.axes().items() if k != "world_size"}
    return cell_label(axes, PROGRESS_STYLE)


def scaling_frame(data: ReportData) -> pd.DataFrame:
    """One row per (source, cell, world size) of every cell that has a data-parallel variant:
    median step time and throughput over repeats, communication share, speedup and efficiency
    against world_size 1 (empty when no run has an ok data-parallel cell)."""
    from bigtrain.report.data import _source_names

    names = _source_names(data.runs)
    groups: dict[tuple[str, str, int], list[Any]] = {}
    for run in data.runs:
        source = names[run.path.resolve()]
        for record in run.records:
            if record.status == "ok" and record.step_time_s is not None:
                key = (source, _config_label(record), int(record.world_size))
                groups.setdefault(key, []).append(record)
    scaled = {(source, cell) for source, cell, ws in groups if ws > 1}
    rows: list[dict[str, Any]] = []
    for (source, cell, world_size), records in sorted(groups.items()):
        if (source, cell) not in scaled:
            continue
        items_per_s = statistics.median(r.items_per_s for r in records if r.items_per_s)
        one = groups.get((source, cell, 1))
        baseline = statistics.median(r.items_per_s for r in one if r.items_per_s) if one else None
        shares = [r.comm_share_pct for r in records if r.comm_share_pct is not None]
        rows.append({
            "source": source, "cell": cell, "world size": world_size,
            "step median (ms)": 1e3 * statistics.median(r.step_time_s.median for r in records),
            "items/s": items_per_s,
            "communication share (%)": statistics.median(shares) if shares else math.nan,
            f"speedup {RATIO_MARK}": items_per_s / baseline if baseline else math.nan,
            "scaling efficiency (%)": (100 * scaling_efficiency(items_per_s, baseline, world_size)
                                       if baseline else math.nan),
        })
    return pd.DataFrame(rows, columns=list(SCALING_COLUMNS))


def scaling_table(data: ReportData) -> Table | None:
    """The scaling table, or None when no run has an ok data-parallel cell."""
    frame = scaling_frame(data)
    if frame.empty:
        return None
    return Table(
        "scaling",
        "Data-parallel scaling",
        "Each data-parallel cell (DDP, per-rank batch fixed) against world size 1 of the same "
        "cell on the same machine: throughput over all ranks, speedup, and scaling efficiency = "
        "items/s at N ranks / (N x items/s at 1). The step time is the slowest rank's; the "
        "communication share is the part of it that DDP's all-reduce adds (against the same "
        "steps under no_sync()).",
        frame,
    )
