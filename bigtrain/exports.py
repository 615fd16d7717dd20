"""Export a run to other tools' formats: github-action-benchmark, pytest-benchmark, CSV, Parquet.

- github-action-benchmark reads, for its `customSmallerIsBetter` / `customBiggerIsBetter` tools, a
  JSON array of `{name, unit, value, range, extra}` objects. One tool has one direction, so one
  export carries one direction: the lower-is-better metrics (step time, optimizer step, memory,
  energy per step) by default, or the higher-is-better ones (throughput). Names are
  `<cell label> :: <metric>`, built from the cell's axes, so they stay the same from run to run.
- pytest-benchmark's saved-run JSON (what `--benchmark-autosave` writes): one benchmark per cell,
  its stats computed from every measured step time of the cell's ok repeats, so
  `pytest-benchmark compare` and `--benchmark-compare` read our runs.
- CSV and Parquet: the tidy table of `bigtrain.results.frame`, one row per cell and repeat
  (Parquet through the one writer and schema of `bigtrain.results.parquet`).

`EXPORT_FORMATS` is the one registry of formats: name -> producer and help text; the command's
`--format` choices and help come from it.

Analysing side of the wall: never imports torch or pynvml (pandas only for CSV/Parquet).
"""

from __future__ import annotations

import io
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigtrain.compare import Metric, cell_label, group_repeats
from bigtrain.compare.metrics import EXPORTED_METRICS, metric_names_text
from bigtrain.errors import BadInput, unknown_choice
from bigtrain.results.schema import STATUS_OK, CellRecord, quantile
from bigtrain.results.store import LoadedRun
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
        for metric in EXPORTED_METRICS:
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
        for metric in EXPORTED_METRICS:
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


def _csv(run: LoadedRun, *, bigger_is_better: bool = False) -> str:
    return _frame(run).to_csv(index=False)


def _github_action_benchmark_json(run: LoadedRun, *, bigger_is_better: bool = False) -> str:
    return json.dumps(github_action_benchmark(run, bigger_is_better=bigger_is_better),
                      indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def _pytest_benchmark_json(run: LoadedRun, *, bigger_is_better: bool = False) -> str:
    return json.dumps(pytest_benchmark(run), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def _parquet_bytes(run: LoadedRun, *, bigger_is_better: bool = False) -> bytes:
    buffer = io.BytesIO()
    write_parquet(run, buffer)
    return buffer.getvalue()


@dataclass(frozen=True, kw_only=True)
class ExportFormat:
    """One export format: its `--format` name, help text, and the function that produces it."""

    name: str
    help: str
    #: run -> the export: text (str) that may go to stdout, or bytes that need a file.
    produce: Callable[..., str | bytes]
    binary: bool = False
    #: Whether `--bigger-is-better` (the direction of the exported metrics) applies.
    has_direction: bool = False


EXPORT_FORMATS: dict[str, ExportFormat] = {
    f.name: f for f in (
        ExportFormat(
            name="github-action-benchmark", produce=_github_action_benchmark_json,
            has_direction=True,
            help="github-action-benchmark's customSmallerIsBetter JSON ("
                 + metric_names_text(bigger_is_better=False)
                 + "; with --bigger-is-better, customBiggerIsBetter: "
                 + metric_names_text(bigger_is_better=True) + ")",
        ),
        ExportFormat(name="pytest-benchmark", produce=_pytest_benchmark_json,
                     help="pytest-benchmark's saved-run JSON (step time per cell)"),
        ExportFormat(name="csv", produce=_csv,
                     help="one row per cell and repeat, without the raw step times"),
        ExportFormat(name="parquet", produce=_parquet_bytes, binary=True,
                     help="one row per cell and repeat, raw step times included (needs -o)"),
    )
}
FORMATS = tuple(EXPORT_FORMATS)
#: Formats that are text and may go to stdout.
TEXT_FORMATS = frozenset(name for name, f in EXPORT_FORMATS.items() if not f.binary)


def export_format(name: str) -> ExportFormat:
    """The registered format called `name`; BadInput listing the formats otherwise."""
    try:
        return EXPORT_FORMATS[name]
    except KeyError:
        raise unknown_choice("export format", name, FORMATS, where="--format") from None


def export_text(run: LoadedRun, fmt: str, *, bigger_is_better: bool = False) -> str:
    """A text export of the run in `fmt` (github-action-benchmark, pytest-benchmark or csv)."""
    chosen = export_format(fmt)
    if chosen.binary:
        raise BadInput(f"format {fmt!r} is not a text format; text formats: "
                       f"{', '.join(sorted(TEXT_FORMATS))}")
    return chosen.produce(run, bigger_is_better=bigger_is_better)


def write_parquet(run: LoadedRun, path: Path | Any) -> None:
    """The tidy table, raw step times included (a list column), as a Parquet file (or buffer)."""
    from bigtrain.results.frame import run_frame
    from bigtrain.results.parquet import write_parquet as write_frame

    write_frame(run_frame(run), path)


def _frame(run: LoadedRun):  # noqa: ANN202 - pandas, lazily
    from bigtrain.results.frame import run_frame

    # thousands of numbers per row make a CSV unreadable; Parquet keeps them
    return run_frame(run).drop(columns=["step_times_s"], errors="ignore")
