"""The leaderboard's figure: tuned time to target against optimizer state memory, one panel per
board (machine, model, configuration, target) of `bigtrain.report.leaderboard`.

Each optimizer is a point at its median time to target over seeds, with a whisker from its
fastest to its slowest seed that reached; one that did not reach the target in most seeds sits
on a "not reached" line above the others (never left out). Where no record holds the optimizer
state bytes, the x axis is the step time instead, and the caption says so. Names are data:
matplotlib's mathtext is off while drawing. Analysing side: never torch.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

from bigtrain.report import style
from bigtrain.report.data import ReportData
from bigtrain.report.figures import Figure
from bigtrain.report.leaderboard import leaderboard_frames
from bigtrain.report.style import plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buffer.getvalue()


#: An axis whose positive values span more than this ratio is drawn on a log scale: state bytes
#: run from Adafactor's factored vectors to SOAP's Kronecker factors (200x on mlp:digits), and a
#: linear axis packs most optimizers into one corner.
LOG_SPAN = 20.0


#: The marker of each lr schedule, so `adamw constant` and `adamw warmup-cosine` read apart even
#: where the palette repeats a colour.
SCHEDULE_MARKERS = {"constant": "o", "cosine": "^", "warmup-cosine": "s"}


def _plain_log_ticks(axis: Any) -> None:
    """Tick labels as plain numbers: mathtext is off (names are data), so matplotlib's default
    `10^{k}` labels would print as raw TeX."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(
        lambda value, _: f"{value:,.0f}" if value >= 1000 else f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _log_if_wide(values: list[float]) -> bool:
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > LOG_SPAN


def _draw_board(ax: Any, ranked: Any, x_column: str, palette: Mapping[str, str]) -> None:
    """One board: a point per search at (x, median time), numbered by rank, named in a legend
    beside the panel (labels written at the points overlapped where optimizers share a state
    size, as AdamW and Schedule-Free do)."""
    reached = ranked[ranked["seconds_median"].notna()]
    x_values = [float(v) for v in ranked[x_column]]
    y_values = [float(v) for v in reached["seconds_min"]] + [float(v) for v in reached["seconds_max"]]
    log_x, log_y = _log_if_wide(x_values), _log_if_wide(y_values)
    top = max((v for v in y_values if math.isfinite(v)), default=1.0)
    never_y = top * (1.6 if log_y else 1.15) if top > 0 else 1.0
    # Legend entries in rank order (`ranked` is), gathered here: matplotlib's own order would
    # list the plain markers (not reached) before the error bars.
    handles: list[Any] = []
    labels: list[str] = []
    for _, row in ranked.iterrows():
        x = float(row[x_column])
        if not math.isfinite(x):
            continue
        colour = palette.get(str(row["opt_label"]), "#0072B2")
        median = row["seconds_median"]
        rank = int(row["rank"])
        if math.isfinite(median):
            handle = ax.errorbar(x, median, yerr=[[median - row["seconds_min"]],
                                                  [row["seconds_max"] - median]],
                                 fmt=SCHEDULE_MARKERS.get(str(row.get("schedule")), "o"),
                                 color=colour, ecolor=colour, capsize=3)
            label, y = f"{rank}. {row['opt_label']}", median
        else:
            [handle] = ax.plot([x], [never_y], marker="x", color=colour, linestyle="none")
            label = (f"{rank}. {row['opt_label']} (not reached, {row['reached']}/"
                     f"{row['seeds']} seeds)")
            y = never_y
        handles.append(handle)
        labels.append(label)
        ax.annotate(str(rank), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    if log_x:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    if log_y:
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
    else:
        ax.set_ylim(bottom=0)
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7,
              frameon=False, borderaxespad=0)


def leaderboard_figures(data: ReportData, palette: Mapping[str, str] | None = None) -> list[Figure]:
    """The time-to-target vs state-memory figure; none for a report without tuned runs."""
    boards = leaderboard_frames(data)
    if not boards:
        return []
    if palette is None:
        palette = style.optimizer_palette(data.frame["opt_label"])
    has_state = any(ranked["state_bytes"].notna().any() for _, ranked, _ in boards)
    x_column, x_label = (("state_bytes", "optimizer state (bytes)") if has_state
                         else ("step_s", "median step time (s)"))
    style.apply_theme()
    with plt.rc_context({"text.parse_math": False}):
        fig, axes = plt.subplots(1, len(boards), figsize=(7.2 * len(boards), 4.2), squeeze=False)
        for ax, (keys, ranked, _) in zip(axes[0], boards, strict=True):
            _draw_board(ax, ranked, x_column, palette)
            ax.set_xlabel(x_label + (", log scale" if ax.get_xscale() == "log" else ""), fontsize=9)
            ax.set_ylabel("time to target (s, median over seeds"
                          + (", log scale)" if ax.get_yscale() == "log" else ")"), fontsize=9)
            ax.set_title(" · ".join(str(k) for k in keys if str(k) != "all"), fontsize=9)
        fig.suptitle("Tuned time to target vs optimizer state", fontsize=11, fontweight="bold")
        fig.tight_layout()
        png = _png(fig)
    caption = ("Each optimizer at its tuned lr: the median time to target over fresh seeds, "
               "whiskers from the fastest to the slowest seed that reached it; lower is better. "
               "Each point is numbered by its rank, named in the legend. Crosses on the top line "
               "did not reach the target in most seeds. An axis whose values span more than "
               f"{LOG_SPAN:g}x is on a log scale.")
    if not has_state:
        caption += " No record holds the optimizer state bytes, so the x axis is the step time."
    return [Figure("leaderboard-time-vs-state", "Tuned time to target vs optimizer state",
                   caption, png)]
