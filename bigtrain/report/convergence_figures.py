"""Time-to-target figures: learning curves (median over seeds with a min-max band) against steps
and against seconds, the held-out metric with its target line, and bars of steps, seconds and
joules to target.

One figure of curves per model (losses and metrics differ between models); within it a panel per
configuration (batch norm, precision, ...; per machine when there are several) and a line per
optimizer and learning rate, coloured like the optimizer everywhere else in the report. Text in the
figures is data (model, optimizer and metric names): matplotlib's mathtext is off while drawing, so
a `$` in a name is printed, not parsed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bigtrain.report import style
from bigtrain.report.convergence import (
    converge_records,
    lr_label,
    median_band,
    setting_label,
    settings_frame,
    target_label,
)
from bigtrain.report.data import ReportData
from bigtrain.report.figures import Figure
from bigtrain.report.style import plt
from matplotlib.lines import Line2D  # noqa: E402 - after style picked the Agg backend
from bigtrain.results.curves import curve_frame

#: At most this many grid points per curve: past it, an even grid over the range.
MAX_GRID_POINTS = 400
#: Panels per row of a curve figure.
PANELS_PER_ROW = 4
#: Line styles told apart in black and white, one per learning rate of an optimizer.
LR_STYLES = ("-", "--", ":", "-.")


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buffer.getvalue()


def figure_slug(text: str) -> str:
    """A file-name-safe piece from a model name (`cnn:tiny` -> `cnn-tiny`)."""
    keep = "".join(ch if ch.isalnum() else "-" for ch in str(text).lower())
    return "-".join(filter(None, keep.split("-")))[:60] or "model"


def _grid(values: pd.Series) -> np.ndarray:
    points = np.unique(values.dropna().to_numpy(dtype=float))
    if len(points) > MAX_GRID_POINTS:
        points = np.linspace(points[0], points[-1], MAX_GRID_POINTS)
    return points


def labelled_curves(data: ReportData) -> pd.DataFrame:
    """The long-form curves with the report's labels (source, optimizer, config) on every row."""
    curves = curve_frame(data.runs)
    if curves.empty:
        return curves
    records = converge_records(data)
    labels = records[["run_path", "cell_id", "repeat", "source", "opt_label",
                      "setting_config", "match_key"]].assign(
        seed_reached=(records["status"] == "ok") & records["steps_to_target"].notna()
        if "steps_to_target" in records else False)
    return curves.merge(labels, on=["run_path", "cell_id", "repeat"], how="inner")


#: How a curve's last point is marked: its seeds (most of them) reached the target there, or the
#: run stopped without (budget spent, diverged): a line that ends is never mistaken for a crash.
END_REACHED = ("o", "reached the target")
END_STOPPED = ("X", "stopped before the target")


def _panel_of(rows: pd.DataFrame, several_sources: bool) -> pd.Series:
    config = rows["setting_config"].astype(str).replace("all", "")
    if several_sources:
        return (rows["source"].astype(str) + " · " + config).str.rstrip(" ·")
    return config


def _line_styles(rows: pd.DataFrame) -> dict[tuple[str, float], str]:
    """A line style per (optimizer, lr): solid for each optimizer's first lr, then dashed, ..."""
    styles = {}
    for opt, group in rows.groupby("opt_label", sort=True):
        for i, lr in enumerate(sorted(group["lr_used"].fillna(-1.0).unique())):
            styles[(str(opt), float(lr))] = LR_STYLES[i % len(LR_STYLES)]
    return styles


def _several_lrs(rows: pd.DataFrame) -> bool:
    return bool((rows.groupby("opt_label")["lr_used"].nunique(dropna=False) > 1).any())


def curve_figure(model: str, rows: pd.DataFrame, x: str, y: str, palette: Mapping[str, str],
                 several_sources: bool, name: str, title: str, caption: str,
                 x_label: str, y_label: str, target: bool = False) -> Figure:
    """One model's curves of `y` against `x`: a panel per config, a median line and a min-max
    band per optimizer and lr over its seeds, the target as a dashed line when `target`."""
    rows = rows.assign(panel=_panel_of(rows, several_sources))
    panels = sorted(rows["panel"].unique(), key=style.natural_key)
    ncols = min(PANELS_PER_ROW, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows + 0.9),
                             squeeze=False, sharex=True, sharey=True)
    styles = _line_styles(rows)
    with_lr = _several_lrs(rows)
    handles: dict[str, Any] = {}
    log_y = _wants_log(rows[y])
    for i, panel in enumerate(panels):
        ax = axes[i // ncols][i % ncols]
        here = rows[rows["panel"] == panel]
        for (opt, lr), setting in here.groupby(["opt_label", here["lr_used"].fillna(-1.0)],
                                               sort=True):
            seeds = [(g[x].to_numpy(), g[y].to_numpy())
                     for _, g in setting.sort_values(x).groupby("repeat", sort=True)]
            band = median_band(seeds, _grid(setting[x]))
            if band.empty:
                continue
            colour = palette.get(str(opt), "#0072B2")
            label = f"{opt} · {lr_label(None if lr < 0 else lr)}" if with_lr else str(opt)
            (line,) = ax.plot(band["x"], band["median"], color=colour, linewidth=1.6,
                              linestyle=styles.get((str(opt), float(lr)), "-"), label=label)
            if len(seeds) > 1:
                ax.fill_between(band["x"], band["low"], band["high"], color=colour, alpha=0.18,
                                linewidth=0)
            handles.setdefault(label, line)
            reached = setting.groupby("repeat")["seed_reached"].first()
            marker, meaning = END_REACHED if reached.mean() > 0.5 else END_STOPPED
            ax.plot(band["x"].iloc[-1:], band["median"].iloc[-1:], linestyle="none",
                    marker=marker, markersize=7, color=colour, markeredgecolor="black",
                    markeredgewidth=0.6, zorder=4)
            handles.setdefault(f"line ends: {meaning}", Line2D(
                [], [], linestyle="none", marker=marker, color="#999999",
                markeredgecolor="black", markersize=7))
        if target:
            for value in here["target_value"].dropna().unique():
                ax.axhline(float(value), color="#5b6570", linestyle="--", linewidth=1.1)
                handles.setdefault("target", ax.lines[-1])
        ax.set_title(style.wrap(panel or str(model), 44), fontsize=9)
        ax.set_xlabel(x_label)
        if i % ncols == 0:
            ax.set_ylabel(y_label)
        if log_y:
            ax.set_yscale("log")
    for j in range(len(panels), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    fig.suptitle(style.wrap(title, 90), fontsize=11, fontweight="bold")
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=min(4, max(1, len(handles))), frameon=False)
    fig.tight_layout()
    return Figure(name, title, caption, _png(fig))


def _wants_log(values: pd.Series) -> bool:
    positive = values[values > 0]
    return bool(len(positive) > 1 and len(positive) == len(values.dropna())
                and positive.max() / positive.min() > 30)


def curve_figures(data: ReportData, palette: Mapping[str, str]) -> list[Figure]:
    """Per model: held-out loss against steps and against seconds, and the metric with its target."""
    curves = labelled_curves(data)
    if curves.empty:
        return []
    several_sources = curves["source"].nunique() > 1
    figures: list[Figure] = []
    used: set[str] = set()
    for model, rows in curves.groupby("model", sort=True):
        slug = figure_slug(model)
        while slug in used:
            slug += "-x"
        used.add(slug)
        metric = ", ".join(sorted({str(m) for m in rows["target_metric"].dropna()})) or "metric"
        targets = "; ".join(sorted({target_label(m, d, v) for m, d, v in zip(
            rows["target_metric"], rows["target_direction"], rows["target_value"], strict=True)}))
        # where the target is on the loss itself, the loss figures draw it too
        loss_target = set(rows["target_metric"].dropna().astype(str)) <= {"loss", "eval_loss"} \
            and rows["target_metric"].notna().any()
        band = ("line: median over seeds still training; band: fastest to slowest seed; a line "
                "ends with a dot where its seeds reached the target, with a cross where they "
                "stopped before it")
        figures.append(curve_figure(
            model, rows, "step", "eval_loss", palette, several_sources,
            f"converge-loss-steps-{slug}", f"{model}: held-out loss against steps",
            f"Held-out loss at each evaluation against optimizer steps ({band}): the optimizers' "
            "sample efficiency, independent of step cost.", "optimizer steps", "held-out loss",
            target=loss_target))
        figures.append(curve_figure(
            model, rows, "wall_s", "eval_loss", palette, several_sources,
            f"converge-loss-seconds-{slug}", f"{model}: held-out loss against seconds",
            f"Held-out loss against wall seconds of training, data loading included ({band}): "
            "what a slower step costs against fewer steps.", "wall seconds", "held-out loss",
            target=loss_target))
        figures.append(curve_figure(
            model, rows, "step", "eval_metric", palette, several_sources,
            f"converge-metric-steps-{slug}", f"{model}: held-out {metric} against steps",
            f"Held-out {metric} against optimizer steps ({band}); the dashed line is the target "
            f"({targets}).", "optimizer steps", f"held-out {metric}", target=True))
    return figures


def to_target_figure(data: ReportData, palette: Mapping[str, str]) -> list[Figure]:
    """Bars of steps, seconds and (where measured) joules to target: median over seeds, whiskers
    from the fastest to the slowest seed that reached it; settings most seeds did not get there
    say so instead of a bar."""
    settings = settings_frame(data)
    if settings.empty:
        return []
    several = len(set(settings["source"])) > 1
    labels = [(f"{s} · " if several else "") + setting_label(row)
              for s, (_, row) in zip(settings["source"], settings.iterrows(), strict=True)]
    panels = [("steps", "steps to target"), ("seconds", "seconds to target")]
    energy = settings["joules_min"].notna().any()
    if energy:
        panels.append(("joules", "joules to target (GPU)"))
    height = 0.32 * len(settings) + 1.6
    left = style.label_width_in(labels)
    fig, axes = plt.subplots(1, len(panels), figsize=(left + 3.6 * len(panels), height),
                             sharey=True, squeeze=False)
    positions = np.arange(len(settings))
    for ax, (metric, title) in zip(axes[0], panels, strict=True):
        for pos, (_, row) in zip(positions, settings.iterrows(), strict=True):
            colour = palette.get(str(row["opt_label"]), "#0072B2")
            median = row[f"{metric}_median"]
            low, high = row[f"{metric}_min"], row[f"{metric}_max"]
            if math.isnan(median):
                why = "not measured" if metric == "joules" and row["reached"] else "not reached"
                ax.text(0.01, pos, f"{why} ({row['reached']}/{row['seeds']} seeds)",
                        va="center", ha="left", fontsize=8, color="#5b6570",
                        transform=ax.get_yaxis_transform())
                continue
            ax.barh(pos, median, color=colour, height=0.7)
            ax.errorbar(median, pos, xerr=[[median - low], [high - median]], fmt="none",
                        ecolor="#1d2329", elinewidth=1, capsize=2)
            if row["reached"] < row["seeds"]:
                ax.text(high, pos, f"  {row['reached']}/{row['seeds']} seeds", va="center",
                        fontsize=8, color="#5b6570")
        ax.set_title(title, fontsize=10)
        ax.set_xlim(left=0)
    axes[0][0].set_yticks(positions, labels, fontsize=8)
    axes[0][0].invert_yaxis()
    fig.suptitle("Time to target", fontsize=11, fontweight="bold")
    fig.tight_layout()
    note = ("" if energy else " Energy to target is not shown: no run measured GPU energy (NVML); "
            "CPU runs record none.")
    return [Figure(
        "converge-to-target", "Steps, seconds and energy to target",
        "Median over seeds (a seed that never reached the target counts as never), whiskers from "
        "the fastest to the slowest seed that reached it; shorter is better." + note,
        _png(fig),
    )]


def convergence_figures(data: ReportData, palette: Mapping[str, str] | None = None) -> list[Figure]:
    """Every time-to-target figure, in reading order; none for a report without converge records."""
    if converge_records(data).empty:
        return []
    if palette is None:
        palette = style.optimizer_palette(data.frame["opt_label"])
    style.apply_theme()
    with plt.rc_context({"text.parse_math": False}):
        return [*to_target_figure(data, palette), *curve_figures(data, palette)]


__all__: Sequence[str] = ["convergence_figures", "curve_figures", "to_target_figure"]
