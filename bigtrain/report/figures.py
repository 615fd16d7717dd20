"""The report's figures: seaborn/matplotlib (Agg) drawings returned as PNG bytes with a caption.

Figures are drawn per model (throughput units differ between models: samples or tokens) and split
so that no figure holds more than `MAX_ROWS_PER_FIGURE` bars, boxes or heatmap rows; heights grow
with the row count so tick labels never overlap. Machines (sources) are side-by-side panels.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bigtrain.report import style
from bigtrain.report.data import ReportData
from bigtrain.report.style import plt, sns
from bigtrain.report.tables import MIB, efficiency_frame, floor_column, speedup_frame

#: At most this many cells get an NVML timeline figure (each is a row of small panels).
MAX_TIMELINES = 8


@dataclass(frozen=True)
class Figure:
    """One figure of the report: a file name, a title, a one-line caption and the PNG."""

    name: str
    title: str
    caption: str
    png: bytes


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buffer.getvalue()


def _model_groups(summary: pd.DataFrame, per_row: int = 1) -> Iterator[tuple[str, pd.DataFrame]]:
    """(suffix, rows) per model, split so no piece exceeds the row limit; per_row bars per config."""
    for model, rows in summary.groupby("model", sort=True, observed=True):
        configs = list(dict.fromkeys(rows.sort_values("config_in_model")["config_in_model"]))
        per_piece = max(1, style.MAX_ROWS_PER_FIGURE // max(1, per_row))
        pieces = style.chunk(configs, per_piece)
        for i, piece in enumerate(pieces):
            suffix = f"{model}" if len(pieces) == 1 else f"{model} (part {i + 1} of {len(pieces)})"
            yield suffix, rows[rows["config_in_model"].isin(piece)]


def _row_labels(rows: pd.DataFrame) -> pd.Series:
    """`config · optimizer` within a model, or just the optimizer where nothing else varies."""
    return pd.Series(
        [opt if config == "all" else f"{config} · {opt}"
         for config, opt in zip(rows["config_in_model"], rows["opt_label"], strict=True)],
        index=rows.index, dtype="str",
    )


def _slug(text: str) -> str:
    keep = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    return "-".join(filter(None, keep.split("-")))


def _sources_in(data: ReportData, rows: pd.DataFrame) -> list[str]:
    present = set(rows["source"].astype(str))
    return [s for s in data.sources if s in present]


def _needs_log(values: pd.Series) -> bool:
    positive = values[values > 0]
    return bool(len(positive) > 1 and positive.max() / positive.min() > 30)


def _title_and_legend(
    fig: Any, title: str, colours: Mapping[str, str], labels: Sequence[str], legend_title: str
) -> None:
    """Title on top, one shared legend under it, panels below: reserve a fixed band in inches."""
    height_in = fig.get_figheight()
    legend_rows = math.ceil(len(labels) / 4) if labels else 0
    band_in = 0.45 + 0.25 * legend_rows + (0.2 if labels else 0)
    fig.tight_layout(rect=(0, 0, 1, 1 - band_in / height_in))
    fig.suptitle(title, y=1 - 0.08 / height_in, va="top", fontsize=11, fontweight="bold")
    if labels:
        handles = [plt.Rectangle((0, 0), 1, 1, color=colours[label]) for label in labels]
        fig.legend(
            handles, labels, title=legend_title, loc="upper center", ncols=min(len(labels), 4),
            bbox_to_anchor=(0.5, 1 - 0.38 / height_in), frameon=False, fontsize=8,
            title_fontsize=8,
        )


# -- bars: throughput, memory, efficiency -------------------------------------------------------
def bar_figures(
    data: ReportData,
    palette: Mapping[str, str],
    rows: pd.DataFrame,
    value: str,
    *,
    name: str,
    title: str,
    xlabel: str,
    caption: str,
) -> list[Figure]:
    """Horizontal bars of `value` per config, coloured by optimizer, a panel per source."""
    rows = rows[rows[value].notna()]
    figures = []
    n_opts = max(1, rows["opt_label"].nunique()) if not rows.empty else 1
    for suffix, group in _model_groups(rows, per_row=n_opts):
        sources = _sources_in(data, group)
        configs = sorted(group["config_in_model"].unique())
        opts = sorted(group["opt_label"].unique())
        height = 1.6 + len(configs) * (0.2 * len(opts) + 0.16)
        width = style.label_width_in(configs) + 4.2 * len(sources)
        fig, axes = plt.subplots(
            1, len(sources), figsize=(width, max(2.2, height)), sharey=True, squeeze=False
        )
        log = _needs_log(group[value])
        for ax, source in zip(axes[0], sources, strict=True):
            part = group[group["source"].astype(str) == source]
            sns.barplot(
                data=part, x=value, y="config_in_model", hue="opt_label", order=configs,
                hue_order=opts, palette=palette, orient="h", errorbar=None, ax=ax,
                log_scale=log, legend=False,
            )
            ax.set_title(style.wrap(source), fontsize=9)
            ax.set_xlabel(xlabel + (" (log scale)" if log else ""))
            ax.set_ylabel("")
        _title_and_legend(fig, f"{title}: {suffix}", palette, opts, "optimizer")
        figures.append(Figure(f"{name}-{_slug(suffix)}", f"{title}: {suffix}", caption, _png(fig)))
    return figures


def throughput_figures(data: ReportData, palette: Mapping[str, str]) -> list[Figure]:
    """Items per second per cell and optimizer, a panel per machine."""
    summary = data.summary
    if summary.empty:
        return []
    unit = _unit(summary)
    return bar_figures(
        data, palette, summary, "items_per_s", name="throughput", title="Throughput",
        xlabel=f"{unit} per second", caption="Longer bars are faster; compare colours within a "
        "row for the optimizers, panels for the machines.",
    )


def _unit(rows: pd.DataFrame) -> str:
    units = sorted(set(rows["item_unit"].dropna().astype(str)))
    return "/".join(units) if units else "items"


def memory_figures(data: ReportData, palette: Mapping[str, str]) -> list[Figure]:
    """Peak memory per cell: torch's allocated peak on GPUs, the process RSS where there is none."""
    summary = data.summary
    if summary.empty:
        return []
    rows = summary.copy()
    allocated = rows.get("peak_mem_allocated_bytes")
    rss = rows.get("peak_rss_bytes")
    if allocated is None and rss is None:
        return []
    peak = allocated if allocated is not None else rss
    if allocated is not None and rss is not None:
        peak = allocated.where(allocated.notna(), rss)
    rows["peak_mib"] = peak / MIB
    return bar_figures(
        data, palette, rows, "peak_mib", name="memory", title="Peak memory",
        xlabel="peak memory (MiB; torch allocated on GPU, process RSS on CPU)",
        caption="Shorter bars leave room for a bigger batch; optimizers with more state per "
        "parameter (Adam's two moments) need more.",
    )


def efficiency_figures(data: ReportData, palette: Mapping[str, str]) -> list[Figure]:
    """Items per joule and MFU bars, for the runs that recorded power or a FLOP peak."""
    summary = data.summary
    if summary.empty:
        return []
    metrics, _ = efficiency_frame(summary)
    figures = []
    specs = (
        ("items per J", "items_per_j", "Energy efficiency", "items per joule",
         "Longer bars do more training work per joule of GPU energy."),
        ("MFU (%)", "mfu_pct_", "Model FLOPs utilisation", "MFU (% of the chip's peak FLOP/s)",
         "How much of the chip's peak arithmetic the step used; low values point at overheads."),
        ("% of measured peak", "pct_measured_peak", "Share of measured peak",
         "achieved TFLOP/s as % of the calibrated peak",
         "Achieved FLOP/s against what a matmul on this machine actually reaches."),
    )
    for column, key, title, xlabel, caption in specs:
        if column in metrics and metrics[column].notna().any():
            rows = summary.assign(**{key: metrics[column]})
            figures += bar_figures(
                data, palette, rows, key, name=_slug(title), title=title, xlabel=xlabel,
                caption=caption,
            )
    return figures


# -- speedup heatmap ---------------------------------------------------------------------------
def speedup_figures(data: ReportData) -> list[Figure]:
    """Heatmap of speedup against the baseline: a row per cell, a column per other source."""
    merged = speedup_frame(data)
    if merged.empty:
        return []
    merged = merged.assign(row=_row_labels(merged))
    sources = [s for s in data.sources if s in set(merged["source"])]
    figures = []
    for suffix, group in _model_groups(merged, per_row=merged["opt_label"].nunique()):
        grid = group.pivot_table(index="row", columns="source", values="speedup", aggfunc="median")
        grid = grid[[s for s in sources if s in grid.columns]]
        logs = np.log2(grid.astype(float))
        span = max(0.25, float(np.nanmax(np.abs(logs.to_numpy()))) if logs.size else 0.25)
        height = 1.6 + 0.28 * len(grid)
        width = style.label_width_in(grid.index) + 1.7 * len(grid.columns) + 1.2
        fig, ax = plt.subplots(figsize=(max(4.5, width), max(2.4, height)))
        annotations = grid.map(lambda v: "" if pd.isna(v) else f"{v:.2f}×")
        sns.heatmap(
            logs, ax=ax, cmap=style.SPEEDUP_CMAP, center=0, vmin=-span, vmax=span,
            annot=annotations.to_numpy(), fmt="", linewidths=0.5, linecolor="white",
            cbar_kws={"label": f"speedup vs {style.wrap(data.baseline or '', 30)} (log2)"},
            annot_kws={"fontsize": 8},
        )
        ax.set_xticklabels([style.wrap(s, 24) for s in grid.columns], rotation=0, fontsize=8)
        ax.set_ylabel("")
        ax.set_xlabel("machine / run")
        title = f"Speedup against the baseline: {suffix}"
        ax.set_title(title, fontsize=11)
        figures.append(Figure(
            f"speedup-{_slug(suffix)}", title,
            f"Red is faster than the baseline {data.baseline}, blue slower; numbers are ratios of "
            "items per second for the same cell.",
            _png(fig),
        ))
    return figures


# -- phases ------------------------------------------------------------------------------------
def phase_figures(data: ReportData) -> list[Figure]:
    """Stacked bars of forward, backward and optimizer time per cell, a panel per source."""
    summary = data.summary
    phases = ["phase_forward_s", "phase_backward_s", "phase_optimizer_s"]
    if summary.empty or not all(p in summary for p in phases):
        return []
    rows = summary[summary[phases].notna().all(axis=1)]
    rows = rows.assign(row=_row_labels(rows))
    figures = []
    for suffix, group in _model_groups(rows, per_row=max(1, rows["opt_label"].nunique())):
        sources = _sources_in(data, group)
        labels = sorted(group["row"].unique())
        height = 1.8 + 0.26 * len(labels)
        width = style.label_width_in(labels) + 4.0 * len(sources)
        fig, axes = plt.subplots(
            1, len(sources), figsize=(width, max(2.2, height)), sharey=True, squeeze=False
        )
        positions = {label: i for i, label in enumerate(labels)}
        for ax, source in zip(axes[0], sources, strict=True):
            part = group[group["source"].astype(str) == source]
            y = part["row"].map(positions).to_numpy()
            left = np.zeros(len(part))
            for phase, colour in zip(phases, style.PHASE_COLOURS, strict=True):
                width_ms = part[phase].to_numpy(dtype=float) * 1e3
                ax.barh(y, width_ms, left=left, color=colour, height=0.7,
                        label=phase.split("_")[1])
                left += width_ms
            ax.set_yticks(range(len(labels)), labels)
            ax.set_ylim(len(labels) - 0.5, -0.5)
            ax.set_title(style.wrap(source), fontsize=9)
            ax.set_xlabel("median time per step (ms)")
        names = [p.split("_")[1] for p in phases]
        title = f"Where the step goes: {suffix}"
        _title_and_legend(fig, title, dict(zip(names, style.PHASE_COLOURS, strict=True)), names,
                          "phase")
        figures.append(Figure(
            f"phases-{_slug(suffix)}", title,
            "The dark segment is the optimizer step; where it is a large share of the bar, the "
            "optimizer implementation decides the speed.",
            _png(fig),
        ))
    return figures


def optimizer_floor_figure(data: ReportData, palette: Mapping[str, str]) -> list[Figure]:
    """Measured optimizer step against its calibrated bandwidth floor, where calibration exists."""
    summary = data.summary
    if summary.empty or "phase_optimizer_s" not in summary:
        return []
    floor = floor_column([c for c in summary.columns if summary[c].notna().any()])
    if floor is None:
        return []
    rows = summary[summary[floor].notna() & summary["phase_optimizer_s"].notna()]
    if rows.empty:
        return []
    fig, ax = plt.subplots(figsize=(6.5, 5.0))
    markers = dict(zip(data.sources, "osD^vP*X", strict=False))
    for (source, opt), part in rows.groupby(["source", "opt_label"], observed=True):
        ax.scatter(part[floor] * 1e3, part["phase_optimizer_s"] * 1e3, color=palette[opt],
                   marker=markers.get(str(source), "o"), label=f"{opt} · {source}", s=36)
    low = float(min(rows[floor].min(), rows["phase_optimizer_s"].min())) * 1e3
    high = float(max(rows[floor].max(), rows["phase_optimizer_s"].max())) * 1e3
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="at the floor")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("bandwidth floor of the optimizer step (ms, log scale)")
    ax.set_ylabel("measured optimizer step (ms, log scale)")
    ax.set_title("Optimizer step against its bandwidth floor", fontsize=11)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return [Figure(
        "optimizer-floor", "Optimizer step against its bandwidth floor",
        "Points on the dashed line run at memory bandwidth; far above it, the step is limited by "
        "kernel launches or arithmetic, which fused implementations remove.",
        _png(fig),
    )]


# -- step-time distributions -------------------------------------------------------------------
def step_time_figures(data: ReportData, palette: Mapping[str, str]) -> list[Figure]:
    """Box plots of every measured step time per cell, a panel per source."""
    ok = data.ok
    if ok.empty:
        return []
    ok = ok[ok["step_times_s"].map(len) > 0]
    if ok.empty:
        return []
    steps = ok[["source", "model", "config_in_model", "opt_label", "step_times_s"]].explode(
        "step_times_s"
    )
    steps["step_ms"] = steps.pop("step_times_s").astype(float) * 1e3
    steps["row"] = _row_labels(steps)
    figures = []
    for suffix, group in _model_groups(steps, per_row=max(1, steps["opt_label"].nunique())):
        sources = _sources_in(data, group)
        labels = sorted(group["row"].unique())
        height = 1.8 + 0.26 * len(labels)
        width = style.label_width_in(labels) + 4.0 * len(sources)
        fig, axes = plt.subplots(
            1, len(sources), figsize=(width, max(2.2, height)), sharey=True, squeeze=False
        )
        log = _needs_log(group["step_ms"])
        for ax, source in zip(axes[0], sources, strict=True):
            part = group[group["source"].astype(str) == source]
            sns.boxplot(
                data=part, x="step_ms", y="row", hue="opt_label", order=labels, palette=palette,
                dodge=False, orient="h", ax=ax, log_scale=log, legend=False, width=0.7,
                fliersize=1.5, linewidth=0.8,
            )
            ax.set_title(style.wrap(source), fontsize=9)
            ax.set_xlabel("step time (ms" + (", log scale)" if log else ")"))
            ax.set_ylabel("")
        opts = sorted(group["opt_label"].unique())
        title = f"Step-time distribution: {suffix}"
        _title_and_legend(fig, title, palette, opts, "optimizer")
        figures.append(Figure(
            f"step-times-{_slug(suffix)}", title,
            "Each box spans the middle half of the measured steps, whiskers 1.5 IQR, dots outliers; "
            "wide or overlapping boxes mean a difference is within noise.",
            _png(fig),
        ))
    return figures


# -- NVML timelines ----------------------------------------------------------------------------
TIME_KEYS = ("t_s", "time_s", "elapsed_s", "timestamp_s", "t")


def telemetry_series(telemetry: Mapping[str, Any] | None) -> pd.DataFrame | None:
    """A time series inside a record's telemetry, as a frame with a `t_s` column, or None.

    Accepts either a list of samples (`{"samples": [{"t_s": .., "power_w": ..}, ..]}`) or
    parallel lists (`{"timeline": {"t_s": [..], "power_w": [..]}}`), under any key.
    """
    if not telemetry:
        return None
    for value in telemetry.values():
        frame = None
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            frame = pd.DataFrame(list(value))
        elif isinstance(value, Mapping) and any(isinstance(v, list) for v in value.values()):
            lists = {k: v for k, v in value.items() if isinstance(v, list)}
            if len({len(v) for v in lists.values()}) == 1:
                frame = pd.DataFrame(lists)
        if frame is None or frame.empty:
            continue
        time_key = next((k for k in TIME_KEYS if k in frame), None)
        if time_key is None:
            continue
        frame = frame.rename(columns={time_key: "t_s"})
        numeric = [c for c in frame.columns if c != "t_s" and pd.api.types.is_numeric_dtype(frame[c])]
        if numeric and len(frame) > 1:
            frame["t_s"] = frame["t_s"] - frame["t_s"].min()
            return frame[["t_s", *numeric]]
    return None


def _timeline_metrics(columns: Sequence[str]) -> list[str]:
    """Utilisation first, then power, then clocks, then the rest; at most four panels."""
    def rank(name: str) -> tuple[int, str]:
        for i, word in enumerate(("util", "power", "clock", "mhz", "temp")):
            if word in name:
                return i, name
        return 9, name

    return sorted(columns, key=rank)[:4]


def timeline_figures(data: ReportData, palette: Mapping[str, str]) -> list[Figure]:
    """NVML utilisation, power and clock over time for the first cells that recorded a series."""
    sources = dict(zip([r.path.resolve() for r in data.runs], _sources(data), strict=True))
    labels = {
        (str(Path(p).resolve()), c, r): label for p, c, r, label in zip(
            data.frame["run_path"], data.frame["cell_id"], data.frame["repeat"],
            data.frame["cell_label"], strict=True)
    }
    found: list[tuple[str, Any, pd.DataFrame]] = []
    data_path: dict[int, Path] = {}
    total = 0
    for run in data.runs:
        for record in run.records:
            series = telemetry_series(record.telemetry)
            if series is not None:
                total += 1
                if len(found) < MAX_TIMELINES:
                    found.append((sources[run.path.resolve()], record, series))
                    data_path[id(record)] = run.path.resolve()
    if not found:
        return []
    metrics = _timeline_metrics(
        list(dict.fromkeys(c for _, _, s in found for c in s.columns if c != "t_s"))
    )
    fig, axes = plt.subplots(
        len(found), len(metrics), figsize=(3.3 * len(metrics), 1.9 * len(found) + 0.6),
        squeeze=False, sharex="row",
    )
    for row, (source, record, series) in enumerate(found):
        cell = labels.get((str(data_path[id(record)]), record.cell_id, record.repeat), record.cell_id)
        repeat = f" (repeat {record.repeat})" if record.repeat else ""
        label = f"{style.wrap(cell + repeat, 40)}\n{style.wrap(source, 40)}"
        colour = palette.get(_opt_label(record), "#0072B2")
        for col, metric in enumerate(metrics):
            ax = axes[row][col]
            points = series[["t_s", metric]].dropna() if metric in series else None
            if points is not None and not points.empty:
                # Skip failed reads instead of breaking the line at them.
                ax.plot(points["t_s"], points[metric], color=colour, linewidth=1.2)
            else:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center",
                        transform=ax.transAxes, color="grey")
            if row == 0:
                ax.set_title(_metric_title(metric), fontsize=9)
            if row == len(found) - 1:
                ax.set_xlabel("time since first sample (s)")
            if col == 0:
                ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle("NVML timelines", fontsize=11, fontweight="bold")
    fig.tight_layout()
    shown = f"the first {len(found)} of {total}" if total > len(found) else f"all {total}"
    return [Figure(
        "timelines", "NVML timelines",
        f"GPU telemetry over each cell's measured window ({shown} cells with a time series); dips "
        "in utilisation or clocks mark stalls or throttling.",
        _png(fig),
    )]


UNIT_SUFFIXES = {"_pct": "%", "_w": "W", "_mhz": "MHz", "_c": "°C", "_bytes": "bytes", "_s": "s"}


def _metric_title(name: str) -> str:
    """`power_w` -> `power (W)`: the unit suffix of a field name written out."""
    for suffix, unit in UNIT_SUFFIXES.items():
        if name.endswith(suffix):
            return f"{name.removesuffix(suffix).replace('_', ' ')} ({unit})"
    return name.replace("_", " ")


def _sources(data: ReportData) -> list[str]:
    from bigtrain.report.data import _source_names

    names = _source_names(data.runs)
    return [names[r.path.resolve()] for r in data.runs]


def _opt_label(record: Any) -> str:
    from bigtrain.report.data import PLAIN_IMPLS

    impl = str(record.impl)
    return record.optimizer if impl.lower() in PLAIN_IMPLS else f"{record.optimizer} [{impl}]"


def all_figures(data: ReportData) -> list[Figure]:
    """Every figure of the report, in reading order, without those the runs have no data for."""
    style.apply_theme()
    palette = style.optimizer_palette(data.frame["opt_label"]) if not data.frame.empty else {}
    builders: list[Callable[[], list[Figure]]] = [
        lambda: throughput_figures(data, palette),
        lambda: speedup_figures(data),
        lambda: memory_figures(data, palette),
        lambda: efficiency_figures(data, palette),
        lambda: phase_figures(data),
        lambda: optimizer_floor_figure(data, palette),
        lambda: step_time_figures(data, palette),
        lambda: timeline_figures(data, palette),
    ]
    figures: list[Figure] = []
    for build in builders:
        figures += build()
    return figures


__all__ = ["Figure", "all_figures", "telemetry_series"]
