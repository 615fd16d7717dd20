"""Export a run to other tools' formats: github-action-benchmark, pytest-benchmark, CSV, Parquet.

- github-action-benchmark reads, for its `customSmallerIsBetter` / `customBiggerIsBetter` tools, a
  JSON array of `{name, unit, value, range, extra}` objects. One tool has one direction, so one
  export carries one direction: the lower-is-better metrics (step time, optimizer step, memory,
  energy per step) by default, or the higher-is-better ones (throughput). Names are
  `axis=value,...,axis=value :: <metric>` with every axis of the axis table, named, in its order,
  so they stay the same from run to run and two cells never share one. Each cell also has a
  status entry (`:: failed` 0/1, or `:: ok` 1/0 with --bigger-is-better): a cell that goes from ok
  to a crash is a jump on the chart, not a line that ends. A run without cells is an error.
- pytest-benchmark's saved-run JSON (what `--benchmark-autosave` writes): one benchmark per cell,
  its stats computed by pytest-benchmark's own `Stats` from every measured step time of the
  cell's ok repeats, so `pytest-benchmark compare` and `--benchmark-compare` read our runs and
  the file holds the numbers that tool would compute; `machine_info` as pytest-benchmark fills it
  (`system`, `release`, `machine` of the machine that ran, from its recorded environment).
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

from bigtrain.common.errors import BadInput, unknown_choice
from bigtrain.compare import Metric, cell_label, group_repeats
from bigtrain.compare.metrics import EXPORTED_METRICS, metric_names_text
from bigtrain.results.schema import AXES, STATUS_OK, CellRecord
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


#: The per-cell status entry of a github-action-benchmark export: 1 for a failed cell in the
#: smaller-is-better export, 0 in the bigger-is-better one, so a cell that fails is a jump the
#: action alerts on (from 0 to 1, or 1 to 0) instead of a line that silently ends.
STATUS_ENTRY_SMALLER = "failed"
STATUS_ENTRY_BIGGER = "ok"


def benchmark_name(axes: dict[str, Any], metric: str) -> str:
    """`model=cnn:tiny,optimizer=sgd,...,world_size=1 :: step_time`: every axis, named, in the
    axis table's order, then the metric; the same cell has the same name in every run."""
    cell = ",".join(f"{axis}={axes.get(axis)}" for axis in AXES)
    return f"{cell} :: {metric}"


def github_action_benchmark(run: LoadedRun, *, bigger_is_better: bool = False) -> list[dict]:
    """Entries for github-action-benchmark's customSmallerIsBetter (or customBiggerIsBetter) tool.

    Per cell and metric of that direction: `value` is the median over the cell's ok repeats of
    the per-repeat value; `range` is the spread of the repeats (or, with one repeat, of its steps)
    as a standard deviation. Per cell also one status entry (`:: failed`, 0 or 1, or `:: ok`, 1 or
    0, with --bigger-is-better), so a failed cell stays on the chart. Raises BadInput when the run
    has no cell at all: the action rejects an empty file, and an empty chart passes on nothing.
    """
    entries = []
    cells = group_repeats(run.records)
    if not cells:
        raise BadInput(f"{run.path}: the run has no cells to export; github-action-benchmark "
                       "needs at least one entry")
    for cell_id in sorted(cells):
        repeats = cells[cell_id]
        records = [r for r in repeats if r.status == STATUS_OK]
        axes = repeats[0].axes()
        failed = [r for r in repeats if r.status != STATUS_OK]
        status_extra = (f"cell_id={cell_id}; repeats={len(repeats)}; ok={len(records)}; "
                        f"run={run.manifest.run_id}")
        if failed:
            status_extra += f"; {failed[0].status} (repeat {failed[0].repeat}): {failed[0].reason}"
        all_failed = not records
        entries.append({
            "name": benchmark_name(axes, STATUS_ENTRY_BIGGER if bigger_is_better
                                   else STATUS_ENTRY_SMALLER),
            "unit": "cell",
            "value": int(not all_failed) if bigger_is_better else int(all_failed),
            "extra": status_extra,
        })
        for metric in EXPORTED_METRICS:
            if metric.higher_is_better != bigger_is_better or not records:
                continue
            values = [metric.value(r) for r in records]
            if any(v is None or not math.isfinite(v) for v in values):
                continue
            spread_of = values if len(values) > 1 else [
                s for r in records for s in metric.steps(r)
            ]
            entry: dict[str, Any] = {
                "name": benchmark_name(axes, metric.name),
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


def pytest_benchmark_stats(samples: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's stats block for these samples (seconds per round, one iteration), as
    pytest-benchmark itself computes it (`pytest_benchmark.stats.Stats`), raw data included."""
    try:
        from pytest_benchmark.stats import Stats
    except ImportError:  # a core dependency, but an offline install may have skipped it
        raise BadInput("the pytest-benchmark export computes its stats with pytest-benchmark, "
                       "which is not installed here: pip install 'pytest-benchmark>=4'") from None

    stats = Stats()
    for sample in samples:
        stats.update(sample)
    out = stats.as_dict()
    out["data"] = list(samples)
    out["iterations"] = 1
    return out


#: Machine names platform.machine() gives, to read them back out of an `os` string
#: (platform.platform(): `Linux-6.1.0-x86_64-with-glibc2.36`) for runs recorded before `machine`.
_KNOWN_MACHINES = ("x86_64", "aarch64", "arm64", "amd64", "AMD64", "ppc64le", "s390x",
                   "riscv64", "i686", "armv7l")


def platform_parts(env: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(system, release, machine) of the run's machine, as platform.system()/release()/machine()
    gave them where the environment recorded them, else read out of its `os` string; None where
    neither says."""
    system, release, machine = env.get("os_system"), env.get("os_release"), env.get("machine")
    text = str(env.get("os") or "")
    if text and not (system and release and machine):
        head, _, tail = text.partition("-")
        for known in _KNOWN_MACHINES:
            marker = f"-{known}"
            if marker in tail or tail.startswith(known):
                before = tail.split(marker, 1)[0] if marker in tail else ""
                machine = machine or known
                release = release or (before or None)
                break
        system = system or (head or None)
    return system, release, machine


def pytest_benchmark(run: LoadedRun) -> dict[str, Any]:
    """The run as a pytest-benchmark saved run: one benchmark (step time) per ok cell."""
    env = run.manifest.environment
    system, release, machine = platform_parts(env)
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
            "stats": pytest_benchmark_stats(samples),
        })
    return {
        "machine_info": {
            "node": env.get("host"),
            "processor": env.get("cpu_model"),
            "machine": machine,
            "python_implementation": "CPython",
            "python_version": env.get("python_version"),
            "system": system,
            "release": release,
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
