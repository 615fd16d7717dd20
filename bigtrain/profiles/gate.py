"""The op-level diffs `bigbench compare` and `bigbench ab` add for the cells that regressed,
whenever both sides hold profiles of them. Without profiles this costs a folder check per run
and changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigtrain.profiles.diff import CellOpDiff, diff_cell
from bigtrain.profiles.load import PROFILES_DIR, CellProfile, may_have_profiles, profiles_of_run


@dataclass(frozen=True)
class GateDiffs:
    """The diffs of the regressed cells both sides profiled, and notes on those they did not."""

    diffs: tuple[CellOpDiff, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.diffs and not self.notes

    def to_json(self) -> dict[str, Any]:
        return {"cells": [d.to_json() for d in self.diffs], "notes": list(self.notes)}

    def markdown(self) -> str:
        """The gate summary's section naming the op(s) behind each regressed cell ('' if none)."""
        from bigtrain.profiles.render import gate_markdown

        return gate_markdown(self.diffs, self.notes)

    def lines(self) -> list[str]:
        """One plain line per regressed cell for the terminal (control characters made visible)."""
        from bigtrain.profiles.render import gate_lines

        return gate_lines(self.diffs, self.notes)


def with_op_diffs(op_diffs: GateDiffs, comparison: Any,
                  payload: Callable[[], Mapping[str, Any]]
                  ) -> tuple[Callable[[], str], Callable[[], Mapping[str, Any]]]:
    """The gate's Markdown and JSON makers with the op-level diffs added (a section right after
    the regressions table, `op_diffs` in the JSON); exactly compare's own when there are none."""
    from bigtrain.compare import render_markdown

    if op_diffs.empty:
        return (lambda: render_markdown(comparison)), payload
    return ((lambda: render_markdown(comparison, after_failures=op_diffs.markdown())),
            (lambda: {**payload(), "op_diffs": op_diffs.to_json()}))


def _side(runs: Sequence[Any]) -> tuple[dict[str, CellProfile], dict[str, str]]:
    profiles: dict[str, CellProfile] = {}
    invalid: dict[str, str] = {}
    for run in runs:
        if not may_have_profiles(run):
            continue
        found = profiles_of_run(run)
        for cell_id, profile in found.profiles.items():
            profiles.setdefault(cell_id, profile)
        for cell_id, reason in found.invalid.items():
            invalid.setdefault(cell_id, reason)
    return profiles, invalid


def regressed_cell_diffs(comparison: Any, baseline_runs: Sequence[Any],
                         candidate_runs: Sequence[Any]) -> GateDiffs:
    """For each regressed cell of `comparison` (a `bigtrain.compare.Comparison`), the op-level
    diff of its profiles, when both sides profiled it; a note for a regressed cell whose profile
    on a side that has profiles is invalid. Nothing at all when neither side has profiles."""
    from bigtrain.compare.stats import REGRESSED

    regressed = [c for c in comparison.sorted_cells() if c.outcome == REGRESSED]
    if not regressed:
        return GateDiffs()
    base, base_invalid = _side(baseline_runs)
    if not base and not base_invalid:
        return GateDiffs()
    cand, cand_invalid = _side(candidate_runs)
    if not cand and not cand_invalid:
        return GateDiffs()
    diffs, notes = [], []
    for cell in regressed:
        if cell.cell_id in base and cell.cell_id in cand:
            diffs.append(diff_cell(base[cell.cell_id], cand[cell.cell_id], label=cell.label))
            continue
        for side, invalid in (("baseline", base_invalid), ("candidate", cand_invalid)):
            if cell.cell_id in invalid:
                notes.append(f"{cell.label}: the {side}'s profile is invalid: "
                             f"{invalid[cell.cell_id]}")
    return GateDiffs(diffs=tuple(diffs), notes=tuple(notes))


def ab_op_diffs(outcome: Any) -> GateDiffs:
    """`regressed_cell_diffs` of a `bigbench ab` outcome: its two side run folders, when both
    hold a `profiles/` folder (`ab --profile`); nothing otherwise."""
    from bigtrain.common.errors import BadInput
    from bigtrain.results.store import load_run

    result = getattr(outcome, "result", None)
    dirs = getattr(outcome, "run_dirs", None) or {}
    base, cand = dirs.get("baseline"), dirs.get("candidate")
    if result is None or base is None or cand is None:
        return GateDiffs()
    if not (Path(base) / PROFILES_DIR).is_dir() or not (Path(cand) / PROFILES_DIR).is_dir():
        return GateDiffs()
    try:
        return regressed_cell_diffs(result, [load_run(Path(base))], [load_run(Path(cand))])
    except BadInput as exc:
        return GateDiffs(notes=(f"the op-level diff could not read the runs: {exc}",))
