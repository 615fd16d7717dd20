"""Frameworks compared (issue 28): each jax or tensorflow cell against its torch twin, the same cell
(every other axis equal) measured in the same source (machine and run).

Per row: the median step time over the cell's repeats, its spread (p10 to p90 of the pooled step
times, relative to the median), the speedup over the torch twin (torch median / this median: above
1 is faster than torch), the verdict of compare's own test on the two cells' step times (faster or
slower only beyond the threshold and the noise, so a speedup read off a loaded box is not called a
win), the compile seconds kept out of the window, and where the FLOPs came from. Under the table,
the geometric mean of the speedups per framework and model family, with how many of its cells are
beyond the noise. Shown only when
some run has an ok cell of a framework other than torch. Never imports torch, jax or tensorflow:
it reads records.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import pandas as pd

from bigtrain.cells.axes import PROGRESS_STYLE, cell_label
from bigtrain.compare.stats import IMPROVED, REGRESSED, UNCHANGED, MetricSamples, decide
from bigtrain.compare.thresholds import DEFAULT_THRESHOLD_PCT
from bigtrain.report.data import ReportData
from bigtrain.report.tables import RATIO_MARK, Table

TORCH = "torch"
FRAMEWORK_COLUMNS = ("source", "cell", "framework", "repeats", "step median (ms)",
                     "spread p10-p90 (%)", f"speedup vs torch {RATIO_MARK}", "vs torch",
                     "compile (s)", "params", "FLOPs from")
#: How a verdict on step time (lower is better) reads against the torch twin.
VERDICT_WORDS = {IMPROVED: "faster", REGRESSED: "slower",
                 UNCHANGED: f"within {DEFAULT_THRESHOLD_PCT:g}%"}
INSIDE_NOISE = "inside the noise"


def _twin_label(record: Any) -> str:
    """The cell's label with the framework left out: the same for a cell and its torch twin."""
    axes = {k: v for k, v in record.axes().items() if k != "framework"}
    return cell_label(axes, PROGRESS_STYLE)


def geometric_mean(values: Sequence[float]) -> float:
    """The geometric mean of positive ratios (the mean of speedups that multiply); ValueError
    for an empty list or a ratio that is not positive."""
    if not values or any(not v > 0 for v in values):
        raise ValueError(f"a geometric mean needs positive ratios, got {list(values)}")
    return math.exp(statistics.fmean(math.log(v) for v in values))


def _spread_pct(records: Sequence[Any]) -> float:
    times = sorted(t for r in records for t in (r.step_times_s or ()))
    if len(times) < 2:
        return math.nan
    low, high = times[int(0.1 * (len(times) - 1))], times[math.ceil(0.9 * (len(times) - 1))]
    return 100 * (high - low) / statistics.median(times)


def _samples(records: Sequence[Any]) -> MetricSamples:
    return MetricSamples(per_repeat=tuple(r.step_time_s.median for r in records),
                         within=tuple(t for r in records for t in (r.step_times_s or ())))


def versus_torch(records: Sequence[Any], twin: Sequence[Any]) -> str:
    """`faster`, `slower`, `within 5%` or `inside the noise`: compare's `decide` on step time,
    the torch twin as the baseline, at compare's default threshold."""
    verdict = decide(_samples(twin), _samples(records), higher_is_better=False,
                     threshold_pct=DEFAULT_THRESHOLD_PCT)
    return VERDICT_WORDS.get(verdict.outcome, INSIDE_NOISE)


def framework_frame(data: ReportData) -> pd.DataFrame:
    """One row per (source, cell, framework) of every cell measured in more than torch: torch's
    row first, then the others with their speedup over it (empty when no run has an ok cell of
    another framework)."""
    from bigtrain.report.data import source_names

    names = source_names(data.runs)
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for run in data.runs:
        source = names[run.path.resolve()]
        for record in run.records:
            if record.status == "ok" and record.step_time_s is not None:
                key = (source, _twin_label(record), str(getattr(record, "framework", TORCH)))
                groups.setdefault(key, []).append(record)
    compared = {(source, cell) for source, cell, framework in groups if framework != TORCH}
    rows: list[dict[str, Any]] = []
    order = {TORCH: 0}
    for (source, cell, framework), records in sorted(
            groups.items(), key=lambda kv: (kv[0][0], kv[0][1], order.get(kv[0][2], 1), kv[0][2])):
        if (source, cell) not in compared:
            continue
        median_s = statistics.median(r.step_time_s.median for r in records)
        twin = groups.get((source, cell, TORCH))
        torch_s = statistics.median(r.step_time_s.median for r in twin) if twin else None
        compiles = [r.compile_s for r in records if getattr(r, "compile_s", None) is not None]
        rows.append({
            "source": source, "cell": cell, "framework": framework, "repeats": len(records),
            "step median (ms)": 1e3 * median_s,
            "spread p10-p90 (%)": _spread_pct(records),
            f"speedup vs torch {RATIO_MARK}": torch_s / median_s if torch_s else math.nan,
            "vs torch": ("" if framework == TORCH or not twin else versus_torch(records, twin)),
            "compile (s)": statistics.median(compiles) if compiles else math.nan,
            "params": records[0].param_count,
            "FLOPs from": (getattr(records[0], "flops_source", None)
                           or ("torch counter" if framework == TORCH else "none")),
        })
    return pd.DataFrame(rows, columns=list(FRAMEWORK_COLUMNS))


def _beyond_noise(frame: pd.DataFrame, framework: str, family: str) -> str:
    rows = frame[(frame["framework"] == framework)
                 & frame["cell"].astype(str).str.startswith(f"{family}:")
                 & (frame["vs torch"] != "")]
    decided = int(rows["vs torch"].isin([VERDICT_WORDS[IMPROVED], VERDICT_WORDS[REGRESSED]]).sum())
    return f"{decided} of {len(rows)} cells faster or slower beyond the noise"


def family_geomeans(frame: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(framework, model family) -> the geometric mean speedup over torch of its rows."""
    speedup = f"speedup vs torch {RATIO_MARK}"
    out: dict[tuple[str, str], list[float]] = {}
    for _, row in frame[frame["framework"] != TORCH].iterrows():
        if row[speedup] > 0:
            family = str(row["cell"]).split(":", 1)[0]
            out.setdefault((str(row["framework"]), family), []).append(float(row[speedup]))
    return {key: geometric_mean(values) for key, values in sorted(out.items())}


def frameworks_table(data: ReportData) -> Table | None:
    """The framework comparison, or None when no run has an ok cell of a non-torch framework."""
    frame = framework_frame(data)
    if frame.empty:
        return None
    means = family_geomeans(frame)
    notes = tuple(f"Geometric mean speedup of {framework} over torch on {family} cells: "
                  f"{value:.2f}{RATIO_MARK} ({_beyond_noise(frame, framework, family)})"
                  for (framework, family), value in means.items())
    if frame[f"speedup vs torch {RATIO_MARK}"].isna().any():
        notes += ("A row without a speedup has no ok torch twin in its source.",)
    return Table(
        "frameworks",
        "Frameworks compared",
        "Each jax or tensorflow cell against its torch twin (every other axis equal, same "
        f"machine and run): median step time, p10-p90 spread of the step times, speedup = torch "
        f"median / this median (above 1{RATIO_MARK}: faster than torch), compare's verdict on the "
        f"step times (faster or slower only beyond {DEFAULT_THRESHOLD_PCT:g}% and the noise), the "
        "seconds spent "
        "compiling before the window, parameters (equal to the twin's by construction) and where "
        "the FLOPs came from.",
        frame,
        notes=notes,
    )
