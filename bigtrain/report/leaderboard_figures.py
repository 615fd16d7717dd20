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
        fig, axes = plt.subplots(1, len(boards), figsize=(4.8 * len(boards), 3.8), squeeze=False)
        for ax, (keys, ranked, _) in zip(axes[0], boards, strict=True):
            reached = ranked[ranked["seconds_median"].notna()]
            top = float(reached["seconds_max"].max()) if not reached.empty else 1.0
            never_y = 1.15 * top if math.isfinite(top) and top > 0 else 1.0
            for _, row in ranked.iterrows():
                x = row[x_column]
                if not math.isfinite(x):
                    continue
                colour = palette.get(str(row["opt_label"]), "#0072B2")
                median = row["seconds_median"]
                if math.isfinite(median):
                    ax.errorbar(x, median, yerr=[[median - row["seconds_min"]],
                                                 [row["seconds_max"] - median]],
                                fmt="o", color=colour, ecolor=colour, capsize=3)
                    ax.annotate(str(row["opt_label"]), (x, median), xytext=(4, 4),
                                textcoords="offset points", fontsize=8)
                else:
                    ax.plot([x], [never_y], marker="x", color=colour, linestyle="none")
                    ax.annotate(f"{row['opt_label']} (not reached, {row['reached']}/"
                                f"{row['seeds']} seeds)", (x, never_y), xytext=(4, 4),
                                textcoords="offset points", fontsize=8, color="#5b6570")
            ax.set_xlabel(x_label, fontsize=9)
            ax.set_ylabel("time to target (s, median over seeds)", fontsize=9)
            ax.set_title(" · ".join(str(k) for k in keys if str(k) != "all"), fontsize=9)
            ax.set_ylim(bottom=0)
        fig.suptitle("Tuned time to target vs optimizer state", fontsize=11, fontweight="bold")
        fig.tight_layout()
        png = _png(fig)
    caption = ("Each optimizer at its tuned lr: the median time to target over fresh seeds, "
               "whiskers from the fastest to the slowest seed that reached it; lower is better. "
               "Crosses on the top line did not reach the target in most seeds.")
    if not has_state:
        caption += " No record holds the optimizer state bytes, so the x axis is the step time."
    return [Figure("leaderboard-time-vs-state", "Tuned time to target vs optimizer state",
                   caption, png)]
