"""Memory traded for speed: the largest batch that fits (`bigbench fit`), and throughput against
peak memory for every run whose cells differ in how they use memory.

- `fit_table`: one row per fit search (source and group): the largest batch size that trained,
  whether that is exact or a lower bound, the first batch that did not fit, the probes it took,
  and the throughput and peak memory measured at that batch (the search's `max` record). Rows are
  keyed by optimizer x precision x checkpointing x parallel, the last two where the axis table
  has them.
- `tradeoff_figures`: samples/s against peak memory, and against peak memory per sample, one line
  per model (and per other configuration within it), so "checkpointing costs 25% speed for 60%
  memory" is read off the figure.

Memory fields are read defensively: `peak_memory_per_sample_bytes` where a record has it, else
the peak over the (micro-)batch size; the peak is the allocator's on CUDA and the process's RSS
on the CPU; a sharded cell's per-rank peak where the record has one. Never imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from bigtrain.cells.axes import AXIS_NAMES, PROGRESS_STYLE, LabelStyle, cell_label
from bigtrain.report.data import ReportData, source_names
from bigtrain.report.tables import MIB, Table

#: Axes the fit table is keyed by, in this order, where the axis table has them.
FIT_KEY_AXES = ("optimizer", "precision", "checkpointing", "parallel")
#: Axes that change how a cell uses memory; cells differing only in these are one trade-off line.
MEMORY_LEVERS = ("batch_size", "checkpointing", "grad_accum", "parallel", "world_size")
#: The record field that holds a data-parallel cell's peak per rank, in rank order (the levers').
PER_RANK_MEMORY_FIELD = "rank_peak_mem_bytes"
PER_SAMPLE_FIELD = "peak_memory_per_sample_bytes"
MICRO_BATCH_FIELD = "micro_batch_size"

FIT_COLUMNS_TAIL = ("max batch", "answer", "first failing batch", "probes", "samples/s at max",
                    "items/s at max", "peak at max (MiB)", "per sample at max (MiB)", "search ended")


def _get(record: Any, name: str) -> Any:
    return getattr(record, name, None)


def peak_memory_bytes(record: Any) -> float | None:
    """A record's peak: per rank where the record has it, else the allocator's on CUDA, else the
    process's RSS."""
    ranks = _get(record, PER_RANK_MEMORY_FIELD)
    if isinstance(ranks, (list, tuple)):
        peaks = [v for v in ranks if isinstance(v, (int, float)) and v > 0]
        if peaks:
            return float(max(peaks))  # the rank that runs out first decides what fits
    if str(_get(record, "device") or "").startswith("cuda"):
        value = _get(record, "peak_mem_allocated_bytes")
    else:
        value = _get(record, "peak_rss_bytes")
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def per_sample_bytes(record: Any) -> float | None:
    """The record's own peak memory per sample, else its peak over its (micro-)batch size."""
    own = _get(record, PER_SAMPLE_FIELD)
    if isinstance(own, (int, float)) and own > 0:
        return float(own)
    peak = peak_memory_bytes(record)
    batch = _get(record, MICRO_BATCH_FIELD) or _get(record, "batch_size")
    return peak / batch if peak is not None and isinstance(batch, int) and batch > 0 else None


def samples_per_s(record: Any) -> float | None:
    """Throughput in samples (sequences, images) per second: the record's own, else items/s
    times samples per item."""
    own = _get(record, "samples_per_s")
    if isinstance(own, (int, float)) and own > 0:
        return float(own)
    items, per_step, batch = (_get(record, "items_per_s"), _get(record, "items_per_step"),
                              _get(record, "batch_size"))
    if not isinstance(items, (int, float)) or items <= 0:
        return None
    if isinstance(per_step, (int, float)) and per_step > 0 and isinstance(batch, int):
        return items * batch / per_step
    return float(items) if _get(record, "item_unit") in ("samples", "images") else None


def _group_label(record: Any, leave_out: Sequence[str]) -> str:
    axes = {name: _get(record, name) for name in AXIS_NAMES if name not in leave_out}
    style = LabelStyle(order=tuple(a for a in PROGRESS_STYLE.order if a not in leave_out),
                       wording=PROGRESS_STYLE.wording, other_axes=True)
    return cell_label(axes, style)


def fit_frame(data: ReportData) -> pd.DataFrame:
    """One row per (source, fit group) of every fit run (empty when the report has none)."""
    names = source_names(data.runs)
    key_axes = [a for a in FIT_KEY_AXES if a in AXIS_NAMES]
    rows: list[dict[str, Any]] = []
    for run in data.runs:
        groups: dict[str, list[Any]] = {}
        for record in run.records:
            group = _get(record, "fit_group")
            if group and _get(record, "fit_role") in ("probe", "max"):
                groups.setdefault(group, []).append(record)
        for records in groups.values():
            rows.append(_fit_row(names[run.path.resolve()], records, key_axes))
    columns = ["source", "model", *key_axes, "cell", *FIT_COLUMNS_TAIL]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    return frame.sort_values(["source", "model", *key_axes], kind="stable").reset_index(drop=True)


def _fit_row(source: str, records: Sequence[Any], key_axes: Sequence[str]) -> dict[str, Any]:
    probes = [r for r in records if _get(r, "fit_role") == "probe"]
    maxes = [r for r in records if _get(r, "fit_role") == "max"]
    top = maxes[-1] if maxes else None
    first = (top or records[0])
    fits = [r.batch_size for r in probes if r.status == "ok"]
    fails = [r.batch_size for r in probes if r.status == "oom"]
    if top is not None:
        best, failing, stop = top.batch_size, _get(top, "fit_fail_batch_size"), _get(top, "fit_stop")
    else:
        best = max(fits) if fits else None
        failing = min(fails) if fails else None
        others = [r for r in probes if r.status not in ("ok", "oom")]
        stop = ("none_fit" if best is None and fails and not others else
                f"unfinished: {others[-1].status}" if others else "unfinished")
    if best is None:
        answer = "none fits"
    elif stop in ("boundary", "batch_max"):
        answer = "exact" if stop == "boundary" else "at least (--batch-max fits)"
    else:
        answer = "at least"
    if top is not None and top.status != "ok":
        answer += f"; the measurement at it ended {top.status}"
    # An answer measured over its budget still holds its figures (the reason names the peak).
    measured = top if top is not None and top.status in ("ok", "oom") else None
    peak = peak_memory_bytes(measured) if measured is not None else None
    per_sample = per_sample_bytes(measured) if measured is not None else None
    leave_out = ("model", "batch_size", *key_axes)
    return {
        "source": source, "model": first.model,
        **{a: _get(first, a) for a in key_axes},
        "cell": _group_label(first, leave_out) or "—",
        "max batch": best,
        "answer": answer,
        "first failing batch": failing,
        "probes": len(probes),
        "samples/s at max": samples_per_s(measured) if measured is not None else math.nan,
        "items/s at max": (_get(measured, "items_per_s") if measured is not None else math.nan),
        "peak at max (MiB)": peak / MIB if peak is not None else math.nan,
        "per sample at max (MiB)": per_sample / MIB if per_sample is not None else math.nan,
        "search ended": stop or "—",
    }


def fit_table(data: ReportData) -> Table | None:
    """The largest batch that trains per fit search, or None when the report has no fit run."""
    frame = fit_frame(data)
    if frame.empty:
        return None
    return Table(
        "fit",
        "Largest batch that trains (bigbench fit)",
        "Per cell less its batch size: the largest batch size that trained, found by doubling "
        "from --batch-min then bisecting; `exact` when the next size up did not fit, `at least` "
        "when the probes ran out, --batch-max fitted or a probe failed for another reason. A "
        "probe fits on CUDA when it did not run out of the GPU's memory, on the CPU when its "
        "peak RSS stayed within --memory-budget. Throughput and peak are measured again at the "
        "batch found, with the same warm-up and window; where that measurement went over the "
        "memory, `answer` says so (a peak measured twice varies: the boundary is as sharp as "
        "that spread). samples/s counts sequences for token models.",
        frame,
    )


# -- throughput against memory --------------------------------------------------------------------
def tradeoff_frame(data: ReportData) -> pd.DataFrame:
    """One row per ok record with a throughput and a peak: samples/s, peak and per-sample peak
    (MiB), its model, its line (the cell less its memory levers) and a point label."""
    names = source_names(data.runs)
    levers = [a for a in MEMORY_LEVERS if a in AXIS_NAMES]
    rows = []
    for run in data.runs:
        source = names[run.path.resolve()]
        for record in run.records:
            if record.status != "ok":
                continue
            speed, peak = samples_per_s(record), peak_memory_bytes(record)
            if speed is None or peak is None:
                continue
            per_sample = per_sample_bytes(record)
            shown = [f"bs {record.batch_size}"] + [
                f"{a} {_get(record, a)}" for a in levers
                if a != "batch_size" and str(_get(record, a)) not in ("off", "1", "ddp", "None")]
            rows.append({
                "source": source, "model": record.model,
                "line": _group_label(record, ("model", *levers)),
                "lever": ", ".join(shown),
                "lever_key": tuple(str(_get(record, a)) for a in levers),
                "samples/s": speed, "peak (MiB)": peak / MIB,
                "per sample (MiB)": per_sample / MIB if per_sample else math.nan,
            })
    return pd.DataFrame(rows, columns=["source", "model", "line", "lever", "lever_key",
                                       "samples/s", "peak (MiB)", "per sample (MiB)"])


def _worth_drawing(frame: pd.DataFrame) -> bool:
    """Some line holds two or more memory settings: there is a trade-off to read."""
    if frame.empty:
        return False
    settings = frame.groupby(["source", "model", "line"])["lever_key"].nunique()
    return bool((settings >= 2).any())


def tradeoff_figures(data: ReportData, palette: Mapping[str, str] | None = None) -> list[Any]:
    """Samples/s against peak memory and against peak memory per sample, one line per model
    (and configuration), a point per memory setting; none when no line has two settings."""
    from bigtrain.report import style
    from bigtrain.report.figures import Figure, _png
    from bigtrain.report.style import plt, sns

    frame = tradeoff_frame(data)
    if not _worth_drawing(frame):
        return []
    style.apply_theme()
    # Median over repeats of one setting (a fit run's answer is measured twice: probe and max).
    keys = ["source", "model", "line", "lever", "lever_key"]
    points = frame.groupby(keys, sort=False, dropna=False).median(numeric_only=True).reset_index()
    several_sources = points["source"].nunique() > 1
    points["series"] = [f"{m} · {l}" if l else str(m) for m, l in zip(points["model"],
                                                                         points["line"], strict=True)]
    if several_sources:
        points["series"] = points["series"] + " (" + points["source"].astype(str) + ")"
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), squeeze=False)
    for ax, x in zip(axes[0], ("peak (MiB)", "per sample (MiB)"), strict=True):
        part = points[points[x].notna()].sort_values(x)
        if part.empty:
            continue
        sns.lineplot(data=part, x=x, y="samples/s", hue="model", style="series", markers=True,
                     dashes=False, estimator=None, sort=True, ax=ax, legend=ax is axes[0][0])
        if len(part) <= 40:
            for _, row in part.iterrows():
                ax.annotate(str(row["lever"]), (row[x], row["samples/s"]), fontsize=8,
                            xytext=(3, 3), textcoords="offset points")
        # Memory may span decades (a log axis); throughput stays linear, so a lost share of
        # speed reads as a distance.
        positive = part[x][part[x] > 0]
        if len(positive) > 1 and positive.max() / positive.min() > 30:
            ax.set_xscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            formatter = axis.get_major_formatter()
            if hasattr(formatter, "set_useOffset"):
                formatter.set_useOffset(False)  # 310.01 MiB, not "+3.1e2" and -0.05
        ax.set_xlabel("peak memory per sample (MiB)" if x.startswith("per")
                      else "peak memory (MiB)")
        ax.set_ylabel("samples/s")
    if axes[0][0].get_legend() is not None:
        sns.move_legend(axes[0][0], "best", fontsize=8, title_fontsize=8)
    fig.suptitle("Memory trade-off: throughput against peak memory", fontsize=11, fontweight="bold")
    fig.tight_layout()  # every tick label inside the figure, whatever the scales
    return [Figure(
        "memory-tradeoff", "Throughput against peak memory",
        "Samples per second against peak memory (left) and peak memory per sample (right), one "
        "line per model and configuration, a point per memory setting (batch size and, where "
        "the runs have them, checkpointing, gradient accumulation, sharding). Going left along a "
        "line is memory saved; going down, the speed it costs. Peak: the allocator's on CUDA, "
        "the process's RSS on the CPU (which includes the Python and torch runtime, so per "
        "sample it falls with the batch); a sharded cell's per-rank peak where recorded.",
        _png(fig),
    )]
