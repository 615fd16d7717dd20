"""The comparison as Markdown for a CI summary or PR comment."""

from __future__ import annotations

from collections.abc import Sequence

from bigtrain.compare.busy import measured_busy
from bigtrain.compare.result import GATING_VERDICTS, Comparison
from bigtrain.compare.rows import Row, summary_line, table_rows, thresholds_line
from bigtrain.common.markdown_escape import escape_markdown as _md_escape
from bigtrain.compare.stats import UNDECIDED


def _md_table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| verdict | cell | metric | baseline | candidate | change | evidence |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = (row.outcome, row.cell, row.metric, row.baseline, row.candidate, row.change,
                 row.evidence)
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    return lines


def render_markdown(comparison: Comparison, after_failures: str = "") -> str:
    """Markdown: gating rows and redefined workloads in the open, the rest folded.

    `after_failures`: Markdown placed right after the regressions table (the op-level diffs of
    `bigtrain.profiles.gate`, already escaped), so what explains a failure is read with it."""
    rows = table_rows(comparison)
    gating = [r for r in rows if r.outcome in GATING_VERDICTS]
    # what the noise left open is shown in the open too (the --undecided policy gates on it)
    undecided = [r for r in rows if r.outcome == UNDECIDED]
    rest = [r for r in rows if r.outcome not in GATING_VERDICTS and r.outcome != UNDECIDED]
    redefined = comparison.redefined_cells()
    # Undecided cells, or numbers measured on a busy machine, are no clean pass whatever the
    # exit code: never a green tick over them.
    icon = (":x:" if comparison.gate_failed
            else ":warning:" if not comparison.all_decided or measured_busy(comparison)
            else ":white_check_mark:")
    lines = [
        # Run ids are data (a CI job may build them from a branch name): escaped text, not code
        # spans, since a backtick in the id would end a code span and nothing inside one escapes.
        f"## {icon} bigbench compare: {_md_escape(comparison.baseline_run)} -> "
        f"{_md_escape(comparison.candidate_run)}",
        "",
        f"**{_md_escape(summary_line(comparison))}**; {_md_escape(thresholds_line(comparison))}.",
        "",
    ]
    for line in comparison.hardware_differences:
        lines.append(f"> different hardware/software: {_md_escape(line)}")
    for line in comparison.warnings:
        lines.append(f"> warning: {_md_escape(line)}")
    if comparison.hardware_differences or comparison.warnings:
        lines.append("")
    if gating:
        lines += ["### Regressions and failures", "", *_md_table(gating), ""]
    else:
        lines += ["No regressions or failures.", ""]
    if after_failures:
        lines += [after_failures.rstrip("\n"), ""]
    if undecided:
        why = ("the rounds ran out before the noise allowed a decision" if comparison.paired
               else "the repeats are too noisy to decide")
        lines += [f"### Undecided ({why}; a regression up to the smallest detectable change "
                  f"is not ruled out)", "", *_md_table(undecided), ""]
    if redefined:
        # Compared all the same (a changed model is what a gate is often asked about), but the
        # numbers measure different code: say so where it is seen.
        lines += ["### Workloads redefined (compared all the same)", "",
                  *(f"- {_md_escape(cell.label)}: {_md_escape(cell.redefinition_note or '')}, "
                    f"{cell.outcome}" for cell in redefined), ""]
    if rest:
        lines += [
            "<details>",
            f"<summary>All other results ({len(rest)} rows)</summary>",
            "",
            *_md_table(rest),
            "",
            "</details>",
            "",
        ]
    return "\n".join(lines)
