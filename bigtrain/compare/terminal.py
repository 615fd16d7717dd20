"""The comparison as a rich table for a terminal, regressions first."""

from __future__ import annotations

from typing import Any

from bigtrain.compare.result import FAILED, MISSING, NEW, Comparison
from bigtrain.compare.rows import summary_line, table_rows, thresholds_line
from bigtrain.stats import IMPROVED, REGRESSED, UNCHANGED

VERDICT_STYLES = {REGRESSED: "bold red", FAILED: "bold red",
                  MISSING: "yellow", NEW: "cyan", IMPROVED: "green", UNCHANGED: "dim"}


def render_terminal(comparison: Comparison, console: Any = None) -> None:
    """Print the verdict table (regressions first) with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(
        title=f"{comparison.baseline_run} -> {comparison.candidate_run}",
        caption=thresholds_line(comparison),
    )
    for column in ("verdict", "cell", "metric", "baseline", "candidate", "change", "evidence"):
        table.add_column(column, overflow="fold")
    for row in table_rows(comparison):
        table.add_row(
            f"[{VERDICT_STYLES[row.outcome]}]{row.outcome}[/]", row.cell, row.metric,
            row.baseline, row.candidate, row.change, row.evidence,
        )
    for line in comparison.hardware_differences:
        console.print(f"[yellow]different hardware/software:[/] {line}")
    for line in comparison.warnings:
        console.print(f"[yellow]warning:[/] {line}")
    console.print(table)
    verdict_style = "bold red" if comparison.gate_failed else "bold green"
    console.print(f"[{verdict_style}]{summary_line(comparison)}[/]")
