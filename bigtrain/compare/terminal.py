"""The comparison as a rich table for a terminal, regressions first.

Run ids, cell labels, hardware names and warnings come from the run folders: every one is printed
as text (bigtrain/common/terminal_text.py), so `[/x]` in a run id neither crashes nor styles anything.
"""

from __future__ import annotations

from typing import Any

from bigtrain.compare.busy import measured_busy
from bigtrain.compare.result import FAILED, MISSING, NEW, Comparison
from bigtrain.compare.rows import summary_line, table_rows, thresholds_line
from bigtrain.compare.stats import IMPROVED, REGRESSED, UNCHANGED, UNDECIDED
from bigtrain.common.terminal_text import data_text

VERDICT_STYLES = {REGRESSED: "bold red", FAILED: "bold red",
                  MISSING: "yellow", NEW: "cyan", UNDECIDED: "yellow", IMPROVED: "green",
                  UNCHANGED: "dim"}
#: Off a terminal (CI logs, a file) nothing folds: each row stays one line however long, since a
#: log has no width to fit and 6 cells folded to 80 columns made 346 lines.
UNFOLDED_WIDTH = 100_000


def render_terminal(comparison: Comparison, console: Any = None) -> None:
    """Print the verdict table (regressions first) with rich."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    if not console.is_terminal:
        console = Console(file=console.file, width=UNFOLDED_WIDTH, no_color=console.no_color,
                          force_terminal=False, highlight=False)
    fold = "fold" if console.is_terminal else "ignore"
    table = Table(
        title=data_text(f"{comparison.baseline_run} -> {comparison.candidate_run}"),
        caption=data_text(thresholds_line(comparison)),
    )
    for column in ("verdict", "cell", "metric", "baseline", "candidate", "change", "evidence"):
        table.add_column(column, overflow=fold, no_wrap=not console.is_terminal)
    for row in table_rows(comparison):
        table.add_row(
            data_text(row.outcome, VERDICT_STYLES[row.outcome]),
            *(data_text(value) for value in (row.cell, row.metric, row.baseline, row.candidate,
                                             row.change, row.evidence)),
        )
    for line in comparison.hardware_differences:
        console.print(Text.assemble(("different hardware/software:", "yellow"), " ",
                                    data_text(line)))
    for line in comparison.warnings:
        console.print(Text.assemble(("warning:", "yellow"), " ", data_text(line)))
    console.print(table)
    verdict_style = ("bold red" if comparison.gate_failed
                     else "bold yellow" if not comparison.all_decided or measured_busy(comparison)
                     else "bold green")
    console.print(data_text(summary_line(comparison), verdict_style))
