"""The report's tables: pure functions from the labelled frame to small pandas frames.

Each builder returns a `Table` (or None when the runs hold nothing for it, e.g. no telemetry), so
the renderers can write the same tables as CSV, Markdown and HTML. Values stay numeric here; only
the renderers format them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from bigtrain.report.data import ReportData
from bigtrain.results.fields import report_fields
from bigtrain.results.schema import AXES, STATUSES

MIB = 1024 * 1024
#: Telemetry fields about the sampling itself, left out of the telemetry table (still in Parquet).
TELEMETRY_BOOKKEEPING = frozenset({
    "interval_s", "min_window_s", "util_sample_period_s", "nvml_device", "window_s",
    "energy_window_s", "energy_tick_s", "energy_uncertainty_j",
})
#: The memory table's columns: the field table's report fields (all in bytes, shown in MiB).
MEMORY_COLUMNS: dict[str, str] = {f.name: f.report_label for f in report_fields()}
#: Columns that hold ratios, shown as `1.23×`.
RATIO_MARK = "×"


@dataclass(frozen=True)
class Table:
    """One table of the report: a file name, a title, a one-line caption, the data."""

    name: str
    title: str
    caption: str
    frame: pd.DataFrame
    #: Show in report.md too (the short, decision-making tables); the rest are HTML and CSV only.
    in_markdown: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)


def index_axes(summary: pd.DataFrame) -> list[str]:
    """Axis columns worth showing: model and optimizer always, the others when they vary."""
    shown = ["model", "opt_label"]
    for axis in ("precision", "batch_norm", "batch_size", "compile"):
        if axis in summary and summary[axis].astype(str).nunique() > 1:
            shown.append(axis)
    return shown


def _pretty_axes(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(
        columns={"opt_label": "optimizer", "batch_norm": "batch norm", "batch_size": "batch size"}
    )


# -- header -----------------------------------------------------------------------------------
def runs_table(data: ReportData) -> Table:
    """One row per run: machine, software, dates, state and counts by status."""
    rows = []
    names = dict(zip([r.path.resolve() for r in data.runs], _run_sources(data), strict=True))
    for run in data.runs:
        env = run.manifest.environment
        gpus = env.get("gpus") or []
        statuses = pd.Series([r.status for r in run.records], dtype="str").value_counts()
        row = {
            "source": names[run.path.resolve()],
            "run_id": run.manifest.run_id,
            "GPUs": ", ".join(g.get("name") or "?" for g in gpus) or "none",
            "CPU": env.get("cpu_model"),
            "driver": env.get("driver_version"),
            "torch": env.get("torch_version"),
            "CUDA": env.get("cuda_version"),
            "torch threads": env.get("torch_num_threads"),
            "started": run.manifest.started_at,
            "ended": run.manifest.ended_at,
            "state": run.manifest.state,
            "cells": len(run.records),
        }
        for status in STATUSES:
            row[status] = int(statuses.get(status, 0))
        if run.truncated_lines:
            row["truncated lines"] = ", ".join(map(str, run.truncated_lines))
        rows.append(row)
    frame = pd.DataFrame(rows)
    unused = [s for s in STATUSES if s != "ok" and s in frame and frame[s].sum() == 0]
    frame = frame.drop(columns=unused)
    return Table(
        "runs",
        "Runs and machines",
        "Which machine and software each run used, and how many of its cells finished ok.",
        frame,
    )


def _run_sources(data: ReportData) -> list[str]:
    from bigtrain.report.data import source_names

    names = source_names(data.runs)
    return [names[r.path.resolve()] for r in data.runs]


def spec_table(data: ReportData) -> Table:
    """The resolved spec of each run, one row per spec key."""
    columns = {}
    for run, source in zip(data.runs, _run_sources(data), strict=True):
        columns[source] = {k: _short(v) for k, v in (run.manifest.spec or {}).items()}
    frame = pd.DataFrame(columns)
    frame.index.name = "spec"
    return Table(
        "spec",
        "What was asked for",
        "The resolved sweep spec of each run; differing rows explain cells present in one run only.",
        frame.reset_index(),
        in_markdown=False,
    )


def _short(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, dict):  # the measure settings: readable pairs, not a Python dict
        return "; ".join(f"{k.replace('_', ' ')}: {_short(v)}" for k, v in value.items())
    return "" if value is None else str(value)


# -- throughput and speedup ---------------------------------------------------------------------
def throughput_table(data: ReportData) -> Table | None:
    """Items per second, a column per source, a row per cell (median over ok repeats)."""
    summary = data.summary
    if summary.empty:
        return None
    index = index_axes(summary)
    wide = summary.pivot_table(
        index=[*index, "item_unit"], columns="source", values="items_per_s",
        aggfunc="median", observed=True,
    )
    wide.columns = [f"{c} (items/s)" for c in wide.columns]
    frame = _pretty_axes(wide.reset_index()).rename(columns={"item_unit": "item"})
    return Table(
        "throughput",
        "Throughput",
        "Training items per second (median over repeats), higher is better; compare along a row "
        "to see each machine on the same cell.",
        frame,
    )


def speedup_frame(data: ReportData) -> pd.DataFrame:
    """Long frame: source, cell axes, items/s on the source and on the baseline, and their ratio."""
    summary = data.summary
    columns = ["source", "match_key", "cell_label", "speedup"]
    if data.baseline is None or summary.empty:
        return pd.DataFrame(columns=columns)
    base = summary[summary["source"] == data.baseline][["match_key", "items_per_s"]]
    others = summary[summary["source"] != data.baseline]
    merged = others.merge(base, on="match_key", suffixes=("", "_baseline"))
    merged = merged[merged["items_per_s_baseline"] > 0]
    merged["speedup"] = merged["items_per_s"] / merged["items_per_s_baseline"]
    merged["source"] = merged["source"].astype(str)
    return merged


def geometric_mean(values: Sequence[float]) -> float:
    """The geometric mean, the right average for ratios (2× and 0.5× average to 1×)."""
    values = [v for v in values if v > 0 and math.isfinite(v)]
    if not values:
        return float("nan")
    return math.exp(sum(math.log(v) for v in values) / len(values))


def speedup_table(data: ReportData) -> Table | None:
    """Speedup of each non-baseline source against the baseline, per matched cell."""
    merged = speedup_frame(data)
    if merged.empty:
        return None
    index = index_axes(merged)
    wide = merged.pivot_table(index=index, columns="source", values="speedup", aggfunc="median")
    order = [s for s in data.sources if s in wide.columns]
    wide = wide[order]
    wide.columns = [f"{c} {RATIO_MARK}" for c in wide.columns]
    frame = _pretty_axes(wide.reset_index())
    geo = {
        f"{s} {RATIO_MARK}": geometric_mean(merged.loc[merged["source"] == s, "speedup"].tolist())
        for s in order
    }
    summary_row = {col: "" for col in frame.columns}
    summary_row["model"] = "all matched cells (geometric mean)"
    summary_row.update(geo)
    frame = pd.concat([frame, pd.DataFrame([summary_row])], ignore_index=True)
    return Table(
        "speedup",
        f"Speedup against {data.baseline}",
        f"Throughput relative to the baseline {data.baseline}: above 1× is faster; the last row is "
        "the geometric mean over the cells both runs measured.",
        frame,
    )


# -- memory, energy, efficiency ----------------------------------------------------------------
def memory_table(data: ReportData) -> Table | None:
    """Peak memory per cell in MiB: allocated and reserved by torch, and the process RSS."""
    summary = data.summary
    metrics = MEMORY_COLUMNS
    present = [m for m in metrics if m in summary and summary[m].notna().any()]
    if summary.empty or not present:
        return None
    frame = summary[["source", *index_axes(summary), *present]].copy()
    for metric in present:
        frame[metrics[metric]] = frame.pop(metric) / MIB
    return Table(
        "memory",
        "Peak memory",
        "Peak memory per cell: allocated is what tensors used, reserved what the caching allocator "
        "held, RSS the whole process; lower leaves room for bigger batches.",
        _pretty_axes(frame),
        in_markdown=False,
    )


def find_column(columns: Sequence[str], pattern: str, prefer: str | None = None) -> str | None:
    """The first column matching a regular expression, preferring ones that contain `prefer`."""
    matches = [c for c in columns if re.search(pattern, c)]
    if prefer:
        preferred = [c for c in matches if prefer in c]
        if preferred:
            return preferred[0]
    return matches[0] if matches else None


def efficiency_frame(summary: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per cell: power, energy per step, items per joule, achieved TFLOP/s, MFU, % of measured peak.

    Telemetry fields (bigtrain/measure/telemetry.py) are found by name and unit suffix, so the
    report renders whatever a run recorded and skips what it did not. Windows the telemetry marked
    invalid (too short for NVML to resolve) contribute no energy figures.
    """
    columns = [c for c in summary.columns if summary[c].notna().any()]
    telemetry = [c for c in columns if c.startswith("telemetry_")]
    valid = pd.Series(True, index=summary.index)
    if "telemetry_valid" in summary:
        valid = summary["telemetry_valid"] != 0  # 0 = invalid in some repeat; NaN = not said
    sources: dict[str, str] = {}
    out = pd.DataFrame(index=summary.index)
    power = (
        find_column(telemetry, r"power_from_energy_w$")
        or find_column(telemetry, r"power.*_w$", "mean")
    )
    per_step = find_column(telemetry, r"joules_per_step$")
    items_per_j = find_column(telemetry, r"items_per_j$")
    energy = find_column(telemetry, r"energy_j$")
    if power:
        out["power (W)"] = summary[power].where(valid)
        sources["power"] = power
        # Throughput per watt of mean power: what a machine does within a power budget.
        out["items/s per W"] = (summary["items_per_s"] / summary[power]).where(valid)
        sources["items/s per W"] = f"items_per_s / {power}"
    if per_step:
        out["energy per step (J)"] = summary[per_step].where(valid)
        sources["energy per step"] = per_step
    if items_per_j:
        out["items per J"] = summary[items_per_j].where(valid)
        sources["items per J"] = items_per_j
    elif energy and "window_s" in columns:
        # Energy over the measured window, divided into the items processed in that window.
        out["items per J"] = (summary["items_per_s"] * summary["window_s"] / summary[energy]).where(valid)
        sources["items per J"] = f"items_per_s × window_s / {energy}"
    elif power:
        out["items per J"] = (summary["items_per_s"] / summary[power]).where(valid)
        sources["items per J"] = f"items_per_s / {power}"
    if "achieved_tflops" in columns:
        label, scale = flops_unit(summary["achieved_tflops"])
        out[label] = summary["achieved_tflops"] * scale
    if "mfu_pct" in columns:
        out["MFU (%)"] = summary["mfu_pct"]
    peak = find_column(columns, r"measured_peak.*tflops")
    if peak and "achieved_tflops" in columns:
        out["% of measured peak"] = 100 * summary["achieved_tflops"] / summary[peak]
        sources["measured peak"] = peak
    out = out.loc[:, out.notna().any()] if not out.empty else out
    return out, sources


#: FLOP/s units, largest first, with the factor from TFLOP/s.
FLOPS_UNITS = (("TFLOP/s", 1.0), ("GFLOP/s", 1e3), ("MFLOP/s", 1e6), ("kFLOP/s", 1e9),
               ("FLOP/s", 1e12))
#: What the energy columns say for a machine with no energy counters.
NO_ENERGY_COUNTERS = "no energy counters on this machine"
#: The energy columns of `efficiency_frame`: a machine with none of them measured no energy.
ENERGY_COLUMNS = ("power (W)", "items/s per W", "energy per step (J)", "items per J")


def flops_unit(tflops: pd.Series) -> tuple[str, float]:
    """The largest FLOP/s unit in which the smallest positive value is at least 1, and its factor
    from TFLOP/s: a CPU's 8.03e-07 TFLOP/s reads 803 kFLOP/s, a GPU's 142 TFLOP/s stays."""
    positive = tflops[tflops > 0]
    if positive.empty:
        return FLOPS_UNITS[0]
    smallest = float(positive.min())
    for label, scale in FLOPS_UNITS:
        if smallest * scale >= 1:
            return label, scale
    return FLOPS_UNITS[-1]


def machines_without_energy(data: ReportData, metrics: pd.DataFrame) -> list[str]:
    """The sources none of whose cells measured any energy figure (a CPU-only run)."""
    energy = [c for c in ENERGY_COLUMNS if c in metrics]
    summary = data.summary
    out = []
    for source in data.sources:
        rows = summary["source"].astype(str) == source
        if not rows.any():
            continue
        if not energy or not metrics.loc[rows, energy].notna().any().any():
            out.append(source)
    return out


def efficiency_table(data: ReportData) -> Table | None:
    """Energy and compute efficiency, where the runs recorded them.

    A machine without energy counters (no NVML power: a CPU) is said in words -- `no energy
    counters on this machine` -- rather than left as blank columns; achieved FLOP/s is written in
    a unit that keeps its smallest value at 1 or more.
    """
    summary = data.summary
    if summary.empty:
        return None
    metrics, sources = efficiency_frame(summary)
    if metrics.empty or metrics.columns.empty:
        return None
    # Rows with no figure at all (a CPU run beside a GPU run) would only be noise here.
    keep = metrics.notna().any(axis=1)
    frame = pd.concat([summary[["source", *index_axes(summary)]], metrics], axis=1)[keep]
    notes = tuple(f"{k}: {v}" for k, v in sources.items())
    without = machines_without_energy(data, metrics)
    if without:
        notes = (f"{', '.join(without)}: {NO_ENERGY_COUNTERS} (NVML reports power and energy on "
                 "NVIDIA GPUs only); compute efficiency only.", *notes)
    has_energy = any(c in metrics for c in ENERGY_COLUMNS)
    return Table(
        "efficiency",
        "Energy and compute efficiency" if has_energy else
        f"Compute efficiency ({NO_ENERGY_COUNTERS})",
        "Items per joule (higher is greener) and model FLOPs utilisation (share of the chip's peak "
        "the training step used); blank where the machine reports no power or peak."
        if has_energy else
        f"Achieved FLOP/s per cell; {NO_ENERGY_COUNTERS}, so no power or energy figures.",
        _pretty_axes(frame),
        notes=notes,
    )


def price_table(data: ReportData) -> Table | None:
    """Items per US dollar and dollars per million items, for the machines the user priced.

    Only from `--price` (USD per hour); a machine without a price gets no row, never a guess.
    """
    prices = data.prices_usd_per_h
    summary = data.summary
    if not prices or summary.empty:
        return None
    rows = summary[summary["source"].astype(str).isin(prices) & (summary["items_per_s"] > 0)]
    if rows.empty:
        return None
    usd_per_h = rows["source"].astype(str).map(prices).astype(float)
    frame = rows[["source", *index_axes(summary)]].copy()
    frame["USD per hour"] = usd_per_h
    frame["items/s"] = rows["items_per_s"]
    frame["items per USD"] = rows["items_per_s"] * 3600 / usd_per_h
    frame["USD per million items"] = usd_per_h / 3600 / rows["items_per_s"] * 1e6
    return Table(
        "price",
        "Price-performance",
        "Training items per US dollar at the hourly prices given with --price (higher is "
        "cheaper work), and what a million items cost; machines without a price are left out.",
        _pretty_axes(frame),
        in_markdown=False,
        notes=tuple(f"{source}: {usd:g} USD per hour" for source, usd in prices.items()),
    )


# -- where the time goes -----------------------------------------------------------------------
def floor_column(columns: Sequence[str]) -> str | None:
    """The calibrated bandwidth floor of the optimizer step, if any run recorded one."""
    return find_column(columns, r"floor.*_s$")


def phases_table(data: ReportData) -> Table | None:
    """Forward, backward and optimizer medians per cell in ms, and the optimizer's share."""
    summary = data.summary
    phases = ["phase_forward_s", "phase_backward_s", "phase_optimizer_s"]
    if summary.empty or not all(p in summary for p in phases):
        return None
    summary = summary[summary[phases].notna().all(axis=1)]
    if summary.empty:
        return None
    frame = summary[["source", *index_axes(summary)]].copy()
    for phase in phases:
        frame[f"{phase.split('_')[1]} (ms)"] = summary[phase] * 1e3
    total = summary[phases].sum(axis=1)
    frame["optimizer share (%)"] = 100 * summary["phase_optimizer_s"] / total
    floor = floor_column([c for c in summary.columns if summary[c].notna().any()])
    if floor:
        frame["bandwidth floor (ms)"] = summary[floor] * 1e3
        frame[f"optimizer / floor {RATIO_MARK}"] = summary["phase_optimizer_s"] / summary[floor]
    return Table(
        "phases",
        "Where the step goes",
        "Median forward, backward and optimizer time per step; a large optimizer share is where a "
        "fused or foreach implementation pays off"
        + ("; optimizer / floor near 1× means the step runs at memory bandwidth." if floor else "."),
        _pretty_axes(frame),
        in_markdown=False,
    )


# -- effects of one axis -----------------------------------------------------------------------
def axis_effect_frame(
    data: ReportData, axis: str, reference: str, others: Sequence[str] | None = None
) -> pd.DataFrame:
    """Throughput ratio of each value of `axis` against `reference`, all other axes held equal."""
    summary = data.summary
    if summary.empty or axis not in summary:
        return pd.DataFrame()
    values = summary[axis].astype(str)
    if reference not in set(values) or values.nunique() < 2:
        return pd.DataFrame()
    held = ["source", *[a for a in AXES if a not in (axis, "device")]]
    summary = summary.assign(**{axis: values})
    ref = summary[summary[axis] == reference][[*held, "items_per_s"]]
    rest = summary[summary[axis] != reference]
    if others is not None:
        rest = rest[rest[axis].isin(others)]
    merged = rest.merge(ref, on=held, suffixes=("", "_reference"))
    merged["ratio"] = merged["items_per_s"] / merged["items_per_s_reference"]
    merged["source"] = merged["source"].astype(str)
    return merged


def batch_norm_table(data: ReportData) -> Table | None:
    """Throughput with batch norm on over off, per cell and source."""
    merged = axis_effect_frame(data, "batch_norm", "off", ["on"])
    if merged.empty:
        return None
    index = [c for c in index_axes(merged) if c != "batch_norm"]
    frame = merged[["source", *index, "items_per_s", "items_per_s_reference", "ratio"]]
    frame = frame.rename(columns={
        "items_per_s": "BN on (items/s)",
        "items_per_s_reference": "BN off (items/s)",
        "ratio": f"on / off {RATIO_MARK}",
    })
    return Table(
        "batch_norm",
        "Effect of batch norm",
        "Throughput with batch norm over without, all else equal: below 1× is what batch norm "
        "costs per step.",
        _pretty_axes(frame),
    )


def precision_table(data: ReportData) -> Table | None:
    """Throughput of each reduced precision over fp32, per cell and source."""
    merged = axis_effect_frame(data, "precision", "fp32")
    if merged.empty:
        return None
    index = [c for c in index_axes(merged) if c != "precision"]
    frame = merged[["source", *index, "precision", "items_per_s", "items_per_s_reference", "ratio"]]
    frame = frame.rename(columns={
        "items_per_s": "items/s",
        "items_per_s_reference": "fp32 (items/s)",
        "ratio": f"vs fp32 {RATIO_MARK}",
    })
    return Table(
        "precision",
        "Effect of precision",
        "Throughput of each reduced precision over fp32, all else equal: above 1× is the speedup "
        "mixed precision buys on that machine.",
        _pretty_axes(frame),
    )


# -- noise, telemetry, failures ----------------------------------------------------------------
def step_time_table(data: ReportData) -> Table | None:
    """Step-time median, spread and sample count per cell, so noise is visible in numbers too."""
    summary = data.summary
    if summary.empty:
        return None
    frame = summary[["source", *index_axes(summary)]].copy()
    frame["median (ms)"] = summary["step_time_median_s"] * 1e3
    frame["p10 (ms)"] = summary["step_time_p10_s"] * 1e3
    frame["p90 (ms)"] = summary["step_time_p90_s"] * 1e3
    frame["IQR / median (%)"] = 100 * summary["step_time_iqr_s"] / summary["step_time_median_s"]
    frame["steps"] = summary["step_time_n"]
    frame["repeats"] = summary["repeats"]
    return Table(
        "step_time",
        "Step time and noise",
        "Median step time with its 10th-90th percentile range; an IQR above a few percent of the "
        "median means the cell is noisy and small differences in it are not real.",
        _pretty_axes(frame),
        in_markdown=False,
    )


def telemetry_table(data: ReportData) -> Table | None:
    """Every numeric telemetry field a run recorded, median per cell; None when there is none."""
    summary = data.summary
    columns = [
        c for c in summary.columns
        if c.startswith("telemetry_") and summary[c].notna().any()
        and pd.api.types.is_numeric_dtype(summary[c])
        and c.removeprefix("telemetry_") not in TELEMETRY_BOOKKEEPING
    ]
    if not columns:
        return None
    frame = summary[["source", *index_axes(summary), *columns]]
    frame = frame[summary[columns].notna().any(axis=1)]
    frame = frame.rename(columns={c: c.removeprefix("telemetry_") for c in columns})
    return Table(
        "telemetry",
        "Hardware telemetry (NVML)",
        "What the GPU reported while the cell ran (utilisation, power, clocks, temperature); "
        "low utilisation or throttling explains a slow cell.",
        _pretty_axes(frame),
        in_markdown=False,
    )


def telemetry_missing_table(data: ReportData) -> Table | None:
    """Why telemetry is absent, counted per source and reason."""
    frame = data.frame
    if frame.empty or "telemetry_reason" not in frame:
        return None
    missing = frame[frame["telemetry_reason"].notna()]
    if missing.empty:
        return None
    counts = (
        missing.groupby(["source", "telemetry_reason"], sort=False).size().reset_index(name="cells")
    )
    return Table(
        "telemetry_missing",
        "Telemetry not recorded",
        "Cells without hardware telemetry and why; their power and utilisation columns stay blank.",
        counts.rename(columns={"telemetry_reason": "reason"}),
        in_markdown=False,
    )


def failures_table(data: ReportData) -> Table:
    """Every record that did not finish ok, with its status and reason; never dropped."""
    frame = data.frame
    columns = ["source", "model", "opt_label", "precision", "batch_norm", "batch_size", "compile",
               "device", "repeat", "status", "reason"]
    if frame.empty:
        bad = pd.DataFrame(columns=columns)
    else:
        bad = frame.loc[frame["status"] != "ok", columns]
        bad = bad.sort_values(["source", "status", "model", "opt_label"], kind="stable")
    return Table(
        "not_ok",
        "Cells that did not finish ok",
        "Every cell that failed, was skipped or is unsupported, with the reason; these have no "
        "numbers in the tables above.",
        _pretty_axes(bad.reset_index(drop=True)),
    )
