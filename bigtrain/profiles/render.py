"""A profile diff as a terminal table (rich, every op name as plain text), as Markdown (every
value escaped) and as JSON (`RunDiff.to_json`). Op names come from a trace that a pull request's
own code may have named: data, never markup."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bigtrain.common.markdown_escape import escape_markdown
from bigtrain.common.terminal_text import data_text, inert
from bigtrain.profiles.diff import DEFAULT_TOP, CellOpDiff, RunDiff

_COLUMNS = ("op", "phase", "category", "added µs/step", "share", "baseline µs", "candidate µs",
            "calls/step")


def _row(change: Any) -> tuple[str, ...]:
    share = f"{change.share * 100:.0f}%" if change.share is not None else "—"
    calls = (f"{change.baseline_calls:g} -> {change.candidate_calls:g}"
             if change.calls_change else f"{change.candidate_calls:g}")
    return (change.op, change.phase, change.category, f"{change.added_us:+.3g}", share,
            f"{change.baseline_us:.3g}", f"{change.candidate_us:.3g}", calls)


def cell_heading(cell: CellOpDiff) -> str:
    """`mlp:seed · adam: +12% step time (+30.1 µs/step of op time, host)`."""
    change = f"{cell.step_change_pct:+.1f}% step time" if cell.step_change_pct is not None else ""
    return (f"{cell.label}: {change} ({cell.regression_us:+.3g} µs/step of op self time, "
            f"{cell.time_basis} time)")


def render_terminal(diff: RunDiff, console: Any = None, *, top: int = DEFAULT_TOP) -> None:
    """Print each slower cell's ranked ops, then what could not be diffed."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    if not console.is_terminal:
        # Off a terminal (CI logs, a file) nothing folds, as compare's table.
        console = Console(file=console.file, width=100_000, no_color=console.no_color,
                          force_terminal=False, highlight=False)
    console.print(data_text(f"profile-diff: {diff.baseline} -> {diff.candidate}", "bold"))
    slower = diff.slower
    if not slower:
        console.print(data_text(f"no common cell got slower ({len(diff.cells)} compared)",
                                "green"))
    for cell in slower:
        table = Table(title=data_text(cell_heading(cell)), title_justify="left")
        for column in _COLUMNS:
            table.add_column(column)
        for change in _shown(cell, top):
            table.add_row(*(data_text(v) for v in _row(change)))
        console.print(table)
    for line in _footer_lines(diff):
        console.print(data_text(line, "yellow"))


def _shown(cell: CellOpDiff, top: int) -> list[Any]:
    """The `top` ops that added most, then any op whose call count changed (a launch-count
    change is the answer as often as a slower kernel)."""
    shown = [c for c in cell.changes if c.added_us > 0][:top]
    shown += [c for c in cell.changes if c.calls_change and c not in shown][:top]
    return shown


def _footer_lines(diff: RunDiff) -> list[str]:
    lines = [f"invalid profile, {where}: {reason}" for where, reason in diff.invalid.items()]
    if diff.only_baseline:
        lines.append(f"profiled only in the baseline: {', '.join(diff.only_baseline)}")
    if diff.only_candidate:
        lines.append(f"profiled only in the candidate: {', '.join(diff.only_candidate)}")
    return lines


def render_markdown(diff: RunDiff, *, top: int = DEFAULT_TOP) -> str:
    """The diff as Markdown: a table per slower cell, then what could not be diffed."""
    md = escape_markdown
    lines = [f"## bigbench profile-diff: {md(str(diff.baseline))} -> {md(str(diff.candidate))}",
             ""]
    if not diff.slower:
        lines += [f"No common cell got slower ({len(diff.cells)} compared).", ""]
    for cell in diff.slower:
        lines += [f"### {md(cell_heading(cell))}", "", *cell_table(cell, top), ""]
    footer = _footer_lines(diff)
    if footer:
        lines += [f"- {md(line)}" for line in footer] + [""]
    return "\n".join(lines)


def cell_table(cell: CellOpDiff, top: int = DEFAULT_TOP) -> list[str]:
    """The Markdown table of one cell's ranked ops (every cell escaped)."""
    md = escape_markdown
    lines = ["| " + " | ".join(_COLUMNS) + " |", "| " + " | ".join("---" for _ in _COLUMNS) + " |"]
    lines += ["| " + " | ".join(md(v) for v in _row(c)) + " |" for c in _shown(cell, top)]
    return lines


# -- what `compare` and `ab` add for the cells that regressed ----------------------------------
def gate_markdown(diffs: Sequence[CellOpDiff], notes: Sequence[str] = ()) -> str:
    """The section a gate's Markdown summary gains: per regressed cell, the op(s) behind it
    (in the open), and the ranked table folded. Empty when there is nothing to say."""
    if not diffs and not notes:
        return ""
    md = escape_markdown
    lines = ["### What made the regressed cells slower (op-level profile diff)", ""]
    for cell in diffs:
        lines.append(f"- **{md(cell.label)}**: {md(cell.headline())}")
    lines += [f"- {md(note)}" for note in notes]
    lines.append("")
    for cell in diffs:
        lines += ["<details>", f"<summary>{md(cell_heading(cell))}</summary>", "",
                  *cell_table(cell), "", "</details>", ""]
    return "\n".join(lines)


def gate_lines(diffs: Sequence[CellOpDiff], notes: Sequence[str] = ()) -> list[str]:
    """The same, one plain line per cell, for the terminal (print through `inert`)."""
    lines = [inert(f"op diff: {cell.label}: {cell.headline()}") for cell in diffs]
    return lines + [inert(f"op diff: {note}") for note in notes]
