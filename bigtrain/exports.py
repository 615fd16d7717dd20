"""Export a run to other tools' formats: github-action-benchmark, pytest-benchmark, CSV, Parquet.

- github-action-benchmark reads, for its `customSmallerIsBetter` / `customBiggerIsBetter` tools, a
  JSON array of `{name, unit, value, range, extra}` objects. One tool has one direction, so one
  export carries one direction: the lower-is-better metrics (step time, optimizer step, memory,
  energy per step) by default, or the higher-is-better ones (throughput). Names are
  `<cell label> :: <metric>`, built from the cell's axes, so they stay the same from run to run.
- pytest-benchmark's saved-run JSON (what `--benchmark-autosave` writes): one benchmark per cell,
  its stats computed from every measured step time of the cell's ok repeats, so
  `pytest-benchmark compare` and `--benchmark-compare` read our runs.
- CSV and Parquet: the tidy table of `bigtrain.results.frame`, one row per cell and repeat.

Analysing side of the wall: never imports torch or pynvml (pandas only for CSV/Parquet).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bigtrain.compare import METRICS, Metric, cell_label, group_repeats
from bigtrain.errors import BadInput
from bigtrain.results.schema import STATUS_OK, CellRecord, quantile
from bigtrain.results.store import LoadedRun

FORMATS = ("github-action-benchmark", "pytest-benchmark", "csv", "parquet")
#: Formats that are text and may go to stdout.
TEXT_FORMATS = frozenset({"github-action-benchmark", "pytest-benchmark", "csv"})
#: The pytest-benchmark release whose saved-run layout this export follows.
PYTEST_BENCHMARK_FORMAT_VERSION = "5.3.1"


def _ok_repeats(run: LoadedRun) -> list[tuple[str, list[CellRecord]]]:
    """(cell_id, ok repeats) for every cell with at least one ok repeat, in cell_id order."""
    cells = group_repeats(run.records)
    out = []
    for cell_id in sorted(cells):
        ok = [r for r in cells[cell_id] if r.status == STATUS_OK]
        if ok:
            out.append((cell_id, ok))
    return out


def github_action_benchmark(run: LoadedRun, *, bigger_is_better: bool = False) -> list[dict]:
    """Entries for github-action-benchmark's customSmallerIsBetter (or customBiggerIsBetter) tool.

    `value` is the median over the cell's ok repeats of the per-repeat value; `range` is the
    spread of the repeats (or, with one repeat, of its steps) as a standard deviation.
    """
    entries = []
    for cell_id, records in _ok_repeats(run):
        label = cell_label(records[0].axes())
        for metric in METRICS:
            if metric.higher_is_better != bigger_is_better:
                continue
            values = [metric.value(r) for r in records]
            if any(v is None or not math.isfinite(v) for v in values):
                continue
            spread_of = values if len(values) > 1 else [
                s for r in records for s in metric.steps(r)
            ]
            entry: dict[str, Any] = {
                "name": f"{label} :: {metric.name}",
                "unit": metric.unit,
                "value": statistics.median(values),
            }
            if len(spread_of) > 1:
                entry["range"] = f"± {statistics.stdev(spread_of):.6g}"
            entry["extra"] = (
                f"cell_id={cell_id}; repeats={len(records)}; run={run.manifest.run_id}"
            )
            entries.append(entry)
    return entries


def _tukey_stats(data: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's stats block for these samples (seconds per round, one iteration)."""
    ordered = sorted(data)
    n = len(ordered)
    mean = statistics.fmean(ordered)
    stddev = statistics.stdev(ordered) if n > 1 else 0.0
    q1 = quantile(ordered, 0.25)
    q3 = quantile(ordered, 0.75)
    iqr = q3 - q1
    low_fence, high_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_outliers = sum(1 for x in ordered if x < low_fence or x > high_fence)
    stddev_outliers = sum(1 for x in ordered if x < mean - stddev or x > mean + stddev)
    within = [x for x in ordered if low_fence <= x <= high_fence] or ordered
    total = math.fsum(ordered)
    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": n,
        "median": statistics.median(ordered),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": within[0],
        "hd15iqr": within[-1],
        "ops": n / total if total else 0.0,
        "total": total,
        "data": list(data),
        "iterations": 1,
    }


def pytest_benchmark(run: LoadedRun) -> dict[str, Any]:
    """The run as a pytest-benchmark saved run: one benchmark (step time) per ok cell."""
    env = run.manifest.environment
    benchmarks = []
    for cell_id, records in _ok_repeats(run):
        samples = [s for r in records for s in r.step_times_s]
        if not samples:
            samples = [r.step_time_s.median for r in records if r.step_time_s]
        axes = records[0].axes()
        label = cell_label(axes)
        extra: dict[str, Any] = {"cell_id": cell_id, "repeats": len(records),
                                 "item_unit": records[0].item_unit}
        for metric in METRICS:
            values = [metric.value(r) for r in records]
            if all(v is not None for v in values):
                extra[_key_with_unit(metric)] = statistics.median(values)
        benchmarks.append({
            "group": axes["model"],
            "name": f"step[{label}]",
            "fullname": f"bigbench::step[{label}]",
            "params": {k: v for k, v in axes.items()},
            "param": cell_id,
            "extra_info": extra,
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": None,
                        "max_time": None, "min_time": None, "warmup": True},
            "stats": _tukey_stats(samples),
        })
    return {
        "machine_info": {
            "node": env.get("host"),
            "processor": env.get("cpu_model"),
            "machine": None,
            "python_implementation": "CPython",
            "python_version": env.get("python_version"),
            "system": env.get("os"),
            "release": None,
            "cpu": {"brand_raw": env.get("cpu_model"), "count": env.get("cpu_cores_logical")},
            "bigtrain_environment": dict(env),
        },
        "commit_info": {
            "id": env.get("git_commit") or "unknown",
            "time": None,
            "author_time": None,
            "dirty": bool(env.get("git_dirty")),
            "project": "bigtrain",
            "branch": None,
        },
        "benchmarks": benchmarks,
        "datetime": run.manifest.started_at,
        "version": PYTEST_BENCHMARK_FORMAT_VERSION,
    }


def _key_with_unit(metric: Metric) -> str:
    """The metric's name with its unit, as our record keys spell it: step_time_s, peak_rss_bytes."""
    suffix = {"s": "_s", "bytes": "_bytes", "J": "_j"}.get(metric.unit, "")
    return metric.name + suffix


def export_text(run: LoadedRun, fmt: str, *, bigger_is_better: bool = False) -> str:
    """A text export of the run in `fmt` (github-action-benchmark, pytest-benchmark or csv)."""
    if fmt == "github-action-benchmark":
        return json.dumps(github_action_benchmark(run, bigger_is_better=bigger_is_better),
                          indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    if fmt == "pytest-benchmark":
        return json.dumps(pytest_benchmark(run), indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return _frame(run).to_csv(index=False)
    raise BadInput(f"format {fmt!r} is not a text format; text formats: "
                   f"{', '.join(sorted(TEXT_FORMATS))}")


def write_parquet(run: LoadedRun, path: Path) -> None:
    """The tidy table, raw step times included (a list column), as a Parquet file."""
    frame = _frame(run, keep_step_times=True)
    frame.to_parquet(path, index=False)


def _frame(run: LoadedRun, *, keep_step_times: bool = False):  # noqa: ANN202 - pandas, lazily
    from bigtrain.results.frame import run_frame

    frame = run_frame(run)
    if "step_times_s" in frame:
        if keep_step_times:
            frame["step_times_s"] = frame["step_times_s"].map(list)
        else:
            # thousands of numbers per row make a CSV unreadable; Parquet keeps them
            frame = frame.drop(columns=["step_times_s"])
    return frame
