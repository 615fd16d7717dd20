"""What `bigbench ab` says besides compare's table: per round, and at the end (text, Markdown,
JSON). Paths and run ids are data: the callers print text through `inert`, Markdown escapes."""

from __future__ import annotations

import math
from typing import Any

from bigtrain.common.markdown_escape import escape_markdown
from bigtrain.compare.undecided import undecided_lines

_STOPS = {
    "decided": "every cell decided",
    "rounds": "round limit reached",
    "budget": "the next round would overrun the budget",
    "interrupted": "interrupted: the gate is not passed",
}


def round_line(report: Any) -> str:
    """One line after a round: its time, the time so far, whether everything is decided."""
    state = "every cell decided" if report.decided else "undecided cells remain"
    return (f"ab: round {report.index + 1} took {report.duration_s:.1f} s "
            f"({report.elapsed_s:.1f} s so far); {state}")


def outcome_lines(outcome: Any, undecided: str = "fail") -> list[str]:
    """The A/B run's facts: rounds used against the limits, why it stopped, what undecided cells
    do to the exit code (`--undecided`), where it wrote."""
    lines = [
        f"ab: {outcome.rounds_used} round(s) of at most {outcome.max_rounds} in "
        f"{outcome.elapsed_s:.1f} s of a {outcome.budget_s:g} s budget ({outcome.mode}, order "
        f"seed {outcome.order_seed}); stopped: {_STOPS.get(outcome.stop_reason, outcome.stop_reason)}",
    ]
    if outcome.result is not None:
        lines += [f"ab: {line}" for line in detectable_lines(outcome.result)]
        lines += [f"ab: {line}" for line in undecided_lines(outcome.result, undecided)]
    lines += [f"ab: {side} run: {path}" for side, path in outcome.run_dirs.items()]
    return lines


def detectable_lines(result: Any) -> list[str]:
    """Per cell: its verdict, the rounds it rests on, and the smallest change of each metric the
    rounds could have decided (`Verdict.mde_pct`); `not measurable` where the rounds were too
    few or the metric too noisy for any bound."""
    lines = []
    for cell in result.sorted_cells():
        if not cell.metrics:
            continue
        parts = []
        for m in cell.metrics:
            mde = m.verdict.mde_pct
            if mde is None:
                continue
            parts.append(f"{m.metric.name} {mde:.3g}%" if math.isfinite(mde)
                         else f"{m.metric.name} not measurable")
        rounds = f" after {cell.rounds} round(s)" if cell.rounds is not None else ""
        detail = f"; smallest detectable change: {', '.join(parts)}" if parts else ""
        lines.append(f"{cell.label}: {cell.outcome}{rounds}{detail}")
    return lines


def outcome_markdown(outcome: Any, undecided: str = "fail") -> str:
    """compare's Markdown, then the A/B run's facts."""
    from bigtrain.compare import render_markdown

    from bigtrain.profiles.gate import ab_op_diffs

    facts = "\n".join(f"- {escape_markdown(line.removeprefix('ab: '))}"
                      for line in outcome_lines(outcome, undecided))
    # Where both sides were profiled (`ab --profile`): the ops behind each regressed cell.
    return (render_markdown(outcome.result, after_failures=ab_op_diffs(outcome).markdown())
            + "\n**bigbench ab**\n\n" + facts + "\n")


def outcome_json(outcome: Any, undecided: str = "fail") -> dict[str, Any]:
    """compare's JSON (when a round finished) with the A/B run's facts under `ab`, the
    `--undecided` policy and the exit code it gives among them."""
    from bigtrain.compare.undecided import gate_exit_code
    from bigtrain.compare import to_json
    from bigtrain.profiles.gate import ab_op_diffs

    data = to_json(outcome.result) if outcome.result is not None else {}
    facts = {**outcome.to_json(), "undecided_policy": undecided,
             "exit_code": gate_exit_code(outcome.result, outcome.exit_code, undecided=undecided)}
    op_diffs = ab_op_diffs(outcome)
    if not op_diffs.empty:
        data = {**data, "op_diffs": op_diffs.to_json()}
    return {**data, "ab": facts}
