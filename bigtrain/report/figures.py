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
from bigtrain.report.scaling import scaling_caveats, scaling_frame
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


def _png(fig: Any, *, tight: bool = True) -> bytes:
    """Encode and close a figure. Panel figures lay themselves out in inches and pass
    tight=False: the tight bounding box costs a second full draw, the largest cost of a big report."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight" if tight else None, facecolor="white")
    plt.close(fig)
    return buffer.getvalue()


def _model_groups(summary: pd.DataFrame, per_row: int = 1) -> Iterator[tuple[str, pd.DataFrame]]:
    """(suffix, rows) per model, split so no piece exceeds the row limit; per_row bars per config."""
    for model, rows in summary.groupby("model", sort=True, observed=True):
        configs = sorted(rows["config_in_model"].unique(), key=style.natural_key)
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


#: Below this many decades a log axis gets grid lines at 1, 2 and 5 times each power of ten.
NARROW_LOG_DECADES = 2.0


def log_ticks_phrase(decades: float) -> str:
    """What the grid lines of a `_log_axis` with this range are, for a caption that stays true."""
    if decades < NARROW_LOG_DECADES:
        return "grid lines at 1, 2 and 5 times each power of 10"
    return "a grid line at every power of 10, so one grid line is 10×"


def _log_axis(ax: Any, nonpositive: str = "mask", decades: float = 3.0) -> str:
    """A log x axis with short plain labels (20, 500, 10k): a tick at every power of ten, or at
    1-2-5 times each when the range is narrow; returns `log_ticks_phrase` for the caption.

    numticks is raised so matplotlib never thins the decades to every other one (which made
    "one grid line is 10x" false on wide axes).
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    ax.set_xscale("log", nonpositive=nonpositive)
    subs = (1.0, 2.0, 5.0) if decades < NARROW_LOG_DECADES else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=1000))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: short_number(v)))
    ax.xaxis.set_minor_locator(NullLocator())  # no unlabelled lines the caption does not name
    ax.xaxis.set_minor_formatter(NullFormatter())
    return log_ticks_phrase(decades)


def short_number(value: float) -> str:
    """12000 -> 12k, 3500000 -> 3.5M, 0.02 -> 0.02: tick labels that do not collide."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _decades(values: pd.Series) -> float:
    positive = values[values > 0]
    return math.log10(positive.max() / positive.min()) if len(positive) > 1 else 0.0


def _needs_log(values: pd.Series) -> bool:
    positive = values[values > 0]
    return bool(len(positive) > 1 and positive.max() / positive.min() > 30)


#: Layout of the panel figures, in inches (fixed margins instead of tight_layout: one draw less).
PANEL_WIDTH_IN = 4.0
PANEL_GAP_IN = 0.35
RIGHT_MARGIN_IN = 0.25
BOTTOM_MARGIN_IN = 0.75


def _band_in(legend_labels: Sequence[str]) -> float:
    """Height of the band above the panels: figure title, legend rows, panel titles."""
    legend_rows = math.ceil(len(legend_labels) / 4) if legend_labels else 0
    return 0.45 + (0.25 * legend_rows + 0.25 if legend_labels else 0) + 0.4


def _panel_figure(
    row_labels: Sequence[str], n_panels: int, rows_in: float, legend_labels: Sequence[str]
) -> tuple[Any, list[Any]]:
    """A row of panels sharing their y axis, sized so every row label gets its own height."""
    left_in = style.label_width_in(row_labels)
    band_in = _band_in(legend_labels)
    width = left_in + n_panels * PANEL_WIDTH_IN + (n_panels - 1) * PANEL_GAP_IN + RIGHT_MARGIN_IN
    height = band_in + max(rows_in, 1.0) + BOTTOM_MARGIN_IN
    # sharex: the panels are machines measuring the same thing, so one scale reads across them
    fig, axes = plt.subplots(1, n_panels, figsize=(width, height), sharex=True, sharey=True,
                             squeeze=False)
    fig.subplots_adjust(
        left=left_in / width, right=1 - RIGHT_MARGIN_IN / width, top=1 - band_in / height,
        bottom=BOTTOM_MARGIN_IN / height, wspace=PANEL_GAP_IN / PANEL_WIDTH_IN,
    )
    return fig, list(axes[0])


def _title_and_legend(
    fig: Any, title: str, colours: Mapping[str, str], labels: Sequence[str], legend_title: str
) -> None:
    """Title on top, one shared legend under it, in the band `_panel_figure` reserved."""
    height_in = fig.get_figheight()
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
        configs = sorted(group["config_in_model"].unique(), key=style.natural_key)
        opts = sorted(group["opt_label"].unique())
        fig, axes = _panel_figure(
            configs, len(sources), len(configs) * (0.2 * len(opts) + 0.16), opts
        )
        log = _needs_log(group[value])
        for ax, source in zip(axes, sources, strict=True):
            part = group[group["source"].astype(str) == source]
            sns.barplot(
                data=part, x=value, y="config_in_model", hue="opt_label", order=configs,
                hue_order=opts, palette=palette, orient="h", errorbar=None, ax=ax,
                legend=False,
            )
            if log:
                # Bars start at 0, which a log axis cannot show: clip them at the left edge.
                _log_axis(ax, nonpositive="clip", decades=_decades(group[value]))
                ax.set_xlim(left=float(group[value][group[value] > 0].min()) / 2)
            ax.set_title(style.wrap(source), fontsize=9)
            ax.set_xlabel(xlabel.format(unit=_unit(group)) + (" (log scale)" if log else ""))
            ax.set_ylabel("")
        _title_and_legend(fig, f"{title}: {suffix}", palette, opts, "optimizer")
        figures.append(Figure(
            f"{name}-{_slug(suffix)}", f"{title}: {suffix}", caption, _png(fig, tight=False)
        ))
    return figures


def throughput_figures(data: ReportData, palette: Mapping[str, str]) -> list[Figure]:
    """Items per second per cell, every machine on one shared log axis (a marker per machine).

    Machines differ by 100-1000x (an H200 and a laptop CPU), so one linear axis serves neither and
    a panel per machine with its own axis makes lengths incomparable: one log axis does both.
    """
    summary = data.summary
    if summary.empty:
        return []
    rows = summary[summary["items_per_s"] > 0]
    if rows.empty:
        return []
    rows = rows.assign(row=_row_labels(rows), source=rows["source"].astype(str))
    colours = style.machine_palette(data.sources)
    return dot_figures(
        data, rows, "items_per_s", colour_by="source", colours=colours, marker_by="source",
        name="throughput", title="Throughput", xlabel="{unit} per second (log scale)",
        legend_title="machine",
        caption="One row per cell, one marker per machine, all on the same log axis ({ticks}); "
        "further right is faster.",
    )


#: Marker shapes, one per machine, in the report's machine order.
MACHINE_MARKERS = "oDs^vP*X<>"


def dot_figures(
    data: ReportData,
    rows: pd.DataFrame,
    value: str,
    *,
    colour_by: str,
    colours: Mapping[str, str],
    marker_by: str,
    name: str,
    title: str,
    xlabel: str,
    legend_title: str,
    caption: str,
    reference: float | None = None,
) -> list[Figure]:
    """A dot per row label and `marker_by` value on one log x axis, split per model.

    `rows` needs a `row` label column (config · optimizer) and `source`. `reference` draws a
    vertical line (1x for speedups). Several markers on one row are nudged apart vertically so
    equal values stay visible.
    """
    figures = []
    machines = [s for s in data.sources if s in set(rows[marker_by].astype(str))]
    # Shapes follow the report's machine order, so a machine keeps its shape in every figure.
    markers = {m: MACHINE_MARKERS[i % len(MACHINE_MARKERS)] for i, m in enumerate(data.sources)}
    n_opts = max(1, rows["opt_label"].nunique())
    for suffix, group in _model_groups(rows, per_row=n_opts):
        labels = sorted(group["row"].unique(), key=style.natural_key)
        colour_keys = [k for k in colours if k in set(group[colour_by].astype(str))]
        legend = colour_keys if colour_by == marker_by else [*colour_keys, *machines]
        fig, axes = _panel_figure(labels, 1, 0.24 * len(labels), legend)
        ax = axes[0]
        positions = {label: i for i, label in enumerate(labels)}
        nudge = {m: (i - (len(machines) - 1) / 2) * min(0.5 / max(1, len(machines)), 0.2)
                 for i, m in enumerate(machines)}
        for (colour_key, marker_key), part in group.groupby([colour_by, marker_by], observed=True,
                                                            sort=False):
            y = part["row"].map(positions).to_numpy(dtype=float) + nudge.get(str(marker_key), 0)
            ax.scatter(part[value].to_numpy(dtype=float), y, s=30, zorder=3,
                       color=colours.get(str(colour_key), "#444444"),
                       marker=markers.get(str(marker_key), "o"), edgecolors="white",
                       linewidths=0.4)
        values = group[value][group[value] > 0]
        low, high = float(values.min()), float(values.max())
        if reference is not None:
            low, high = min(low, reference), max(high, reference)
            ax.axvline(reference, color="#555555", linestyle="--", linewidth=1, zorder=1)
        ticks = _log_axis(ax, decades=math.log10(high * 1.6 / (low / 1.6)))
        ax.set_xlim(low / 1.6, high * 1.6)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_xlabel(xlabel.format(unit=_unit(group)))
        ax.set_ylabel("")
        ax.grid(axis="x", which="major", color="#dddddd")
        full_title = f"{title}: {suffix}"
        _dot_legend(fig, full_title, colours, colour_keys, markers,
                    [] if colour_by == marker_by else machines, legend_title)
        figures.append(Figure(f"{name}-{_slug(suffix)}", full_title,
                              caption.replace("{ticks}", ticks), _png(fig, tight=False)))
    return figures


def _dot_legend(fig: Any, title: str, colours: Mapping[str, str], colour_keys: Sequence[str],
                markers: Mapping[str, str], marker_keys: Sequence[str], legend_title: str) -> None:
    """Title, then one legend: a coloured marker per colour key and a grey shape per machine."""
    from matplotlib.lines import Line2D

    height_in = fig.get_figheight()
    fig.suptitle(title, y=1 - 0.08 / height_in, va="top", fontsize=11, fontweight="bold")
    same = not marker_keys
    handles = [Line2D([], [], linestyle="none", color=colours[k],
                      marker=markers.get(k, "o") if same else "o", markersize=6)
               for k in colour_keys]
    handles += [Line2D([], [], linestyle="none", color="#666666", marker=markers[m], markersize=6)
                for m in marker_keys]
    labels = [*colour_keys, *marker_keys]
    if labels:
        fig.legend(handles, [style.wrap(x, 40) for x in labels], title=legend_title,
                   loc="upper center", ncols=min(len(labels), 4),
                   bbox_to_anchor=(0.5, 1 - 0.38 / height_in), frameon=False, fontsize=8,
                   title_fontsize=8)


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
        xlabel="peak memory (MiB)",
        caption="Peak memory: torch's allocated peak on a GPU, the process RSS on a CPU; shorter "
        "bars leave room for a bigger batch, and optimizers with more state (Adam) need more.",
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


# -- speedup dots ------------------------------------------------------------------------------
def speedup_figures(data: ReportData, palette: Mapping[str, str]) -> list[Figure]:
    """Speedup against the baseline per cell: a dot per cell and machine on a log axis, 1x marked.

    Colour is the optimizer (as everywhere in the report), the marker shape the machine.
    """
    merged = speedup_frame(data)
    if merged.empty:
        return []
    merged = merged.assign(row=_row_labels(merged))
    return dot_figures(
        data, merged, "speedup", colour_by="opt_label", colours=palette, marker_by="source",
        name="speedup", title="Speedup", legend_title="optimizer · machine",
        xlabel=f"throughput / throughput on {style.wrap(str(data.baseline), 60)} (log scale)",
        reference=1.0,
        caption=f"Right of the dashed 1× line is faster than the baseline {data.baseline}, left "
        "slower ({ticks}); one dot per cell and machine, coloured by optimizer.",
    )


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
        labels = sorted(group["row"].unique(), key=style.natural_key)
        names = [p.split("_")[1] for p in phases]
        fig, axes = _panel_figure(labels, len(sources), 0.26 * len(labels), names)
        positions = {label: i for i, label in enumerate(labels)}
        for ax, source in zip(axes, sources, strict=True):
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
        title = f"Where the step goes: {suffix}"
        _title_and_legend(fig, title, dict(zip(names, style.PHASE_COLOURS, strict=True)), names,
                          "phase")
        figures.append(Figure(
            f"phases-{_slug(suffix)}", title,
            "The dark segment is the optimizer step; where it is a large share of the bar, the "
            "optimizer implementation decides the speed.",
            _png(fig, tight=False),
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
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
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
    # One row per (source, cell) with every step of every repeat pooled, in ms; no explode of
    # hundreds of thousands of steps into a long frame.
    ok = ok.assign(row=_row_labels(ok))
    pooled = (
        ok.groupby(["source", "model", "config_in_model", "row", "opt_label"], observed=True,
                   sort=False)["step_times_s"]
        .agg(lambda times: np.concatenate([np.asarray(t, dtype=float) for t in times]) * 1e3)
        .rename("step_ms")
        .reset_index()
    )
    pooled["source"] = pooled["source"].astype(str)
    figures = []
    for suffix, group in _model_groups(pooled, per_row=max(1, pooled["opt_label"].nunique())):
        sources = _sources_in(data, group)
        labels = sorted(group["row"].unique(), key=style.natural_key)
        opts = sorted(group["opt_label"].unique())
        fig, axes = _panel_figure(labels, len(sources), 0.26 * len(labels), opts)
        everything = np.concatenate(group["step_ms"].tolist())
        log = _needs_log(pd.Series(everything))
        for ax, source in zip(axes, sources, strict=True):
            part = group[group["source"] == source]
            _boxes(ax, part, labels, palette)
            if log:
                _log_axis(ax, decades=_decades(pd.Series(everything)))
            ax.set_title(style.wrap(source), fontsize=9)
            ax.set_xlabel("step time (ms" + (", log scale)" if log else ")"))
        title = f"Step-time distribution: {suffix}"
        _title_and_legend(fig, title, palette, opts, "optimizer")
        figures.append(Figure(
            f"step-times-{_slug(suffix)}", title,
            "Each box spans the middle half of the measured steps, whiskers 1.5 IQR, dots outliers; "
            "wide or overlapping boxes mean a difference is within noise.",
            _png(fig, tight=False),
        ))
    return figures


def box_stats(values: np.ndarray) -> dict[str, Any]:
    """Quartiles, Tukey whiskers (the furthest point within 1.5 IQR of the box) and outliers."""
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    reach = 1.5 * (q3 - q1)
    inside = values[(values >= q1 - reach) & (values <= q3 + reach)]
    return {
        "q1": q1, "median": median, "q3": q3,
        "low": float(inside.min()) if inside.size else q1,
        "high": float(inside.max()) if inside.size else q3,
        "fliers": values[(values < q1 - reach) | (values > q3 + reach)],
    }


def _boxes(ax: Any, part: pd.DataFrame, labels: Sequence[str], palette: Mapping[str, str]) -> None:
    """One horizontal box per row label, coloured by optimizer.

    Drawn as one bar container plus three line collections and one marker line per panel, not
    six artists per box: a 500-cell report has thousands of boxes and this keeps them cheap.
    """
    from matplotlib.collections import LineCollection

    half = 0.35
    ys, stats, colours = [], [], []
    for label, opt, steps_ms in zip(part["row"], part["opt_label"], part["step_ms"], strict=True):
        ys.append(labels.index(label))
        stats.append(box_stats(np.asarray(steps_ms, dtype=float)))
        colours.append(palette.get(opt, "#888888"))
    if stats:
        q1 = np.array([b["q1"] for b in stats])
        q3 = np.array([b["q3"] for b in stats])
        ax.barh(ys, q3 - q1, left=q1, height=2 * half, color=colours, edgecolor="#222222",
                linewidth=0.6, zorder=2)
        whiskers, medians, caps = [], [], []
        for y, b in zip(ys, stats, strict=True):
            whiskers += [[(b["low"], y), (b["q1"], y)], [(b["q3"], y), (b["high"], y)]]
            medians.append([(b["median"], y - half), (b["median"], y + half)])
            caps += [[(b["low"], y - half / 2), (b["low"], y + half / 2)],
                     [(b["high"], y - half / 2), (b["high"], y + half / 2)]]
        ax.add_collection(LineCollection(whiskers + caps, colors="#222222", linewidths=0.8,
                                         zorder=1))
        ax.add_collection(LineCollection(medians, colors="black", linewidths=1.4, zorder=3))
        flier_x = np.concatenate([b["fliers"] for b in stats])
        flier_y = np.concatenate([np.full(len(b["fliers"]), y) for y, b in zip(ys, stats,
                                                                                strict=True)])
        ax.plot(flier_x, flier_y, linestyle="none", marker=".", markersize=2.5, color="#444444",
                alpha=0.6, zorder=3)
        ax.autoscale_view()
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_ylabel("")


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
                ax.set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
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
    from bigtrain.report.data import source_names

    names = source_names(data.runs)
    return [names[r.path.resolve()] for r in data.runs]


def _opt_label(record: Any) -> str:
    from bigtrain.cells.axes import OPTIMIZER_STYLE, cell_label

    return cell_label({"optimizer": record.optimizer, "impl": record.impl}, OPTIMIZER_STYLE)


def scaling_figures(data: ReportData, palette: Mapping[str, str]) -> list[Figure]:
    """Scaling efficiency against world size, one line per cell and source, beside the ideal."""
    frame = scaling_frame(data)
    frame = frame[frame["scaling efficiency (%)"].notna()]
    if frame.empty:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    for (source, cell), rows in frame.groupby(["source", "cell"], sort=True):
        rows = rows.sort_values("world size")
        label = cell if frame["source"].nunique() == 1 else f"{cell} ({source})"
        ax.plot(rows["world size"], rows["scaling efficiency (%)"], marker="o", label=label)
    ax.axhline(100, color="grey", linestyle="--", linewidth=1, label="ideal")
    sizes = sorted(frame["world size"].unique())
    ax.set_xticks(sizes)
    ax.set_xlabel("world size (ranks)")
    ax.set_ylabel("scaling efficiency (%)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Data-parallel scaling efficiency", fontsize=11, fontweight="bold")
    caveat = " ".join(scaling_caveats(frame))
    return [Figure(
        "scaling-efficiency", "Data-parallel scaling efficiency",
        "Throughput at N ranks over N times throughput at one rank (weak scaling); the dashed "
        "line is perfect scaling." + (f" {caveat}" if caveat else ""),
        _png(fig),
    )]


#: Figure builders in reading order; each takes (data, palette) and returns its figures.
BUILDERS: dict[str, Callable[[ReportData, Mapping[str, str]], list[Figure]]] = {
    "throughput": throughput_figures,
    "speedup": speedup_figures,
    "memory": memory_figures,
    "efficiency": efficiency_figures,
    "scaling": scaling_figures,
    "phases": lambda data, palette: phase_figures(data),
    "optimizer_floor": optimizer_floor_figure,
    "step_times": step_time_figures,
    "timelines": timeline_figures,
}
def _build(name: str, data: ReportData, palette: Mapping[str, str]) -> list[Figure]:
    style.apply_theme()
    return BUILDERS[name](data, palette)


def all_figures(data: ReportData) -> list[Figure]:
    """Every figure of the report, in reading order, without those the runs have no data for."""
    palette = style.optimizer_palette(data.frame["opt_label"]) if not data.frame.empty else {}
    figures: list[Figure] = []
    for name in BUILDERS:
        figures += _build(name, data, palette)
    return figures


__all__ = ["Figure", "all_figures", "telemetry_series"]
