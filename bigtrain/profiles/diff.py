"""The op-level diff of two profiles of one cell: which ops added the time that made it slower.

Ops are matched by (op, phase): a row per input-shape signature of the same op is summed, since a
changed shape is the same op doing more work. Each op's added self time per step, its share of
the regression (the difference of the summed op self times), and its call-count change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigtrain.profiles.breakdown import total_op_time_us
from bigtrain.profiles.load import CellProfile, RunProfiles

#: Ops shown per slower cell (the JSON holds every op).
DEFAULT_TOP = 10


@dataclass(frozen=True)
class OpChange:
    """One op (in one phase) in both profiles."""

    op: str
    phase: str
    category: str
    baseline_us: float
    candidate_us: float
    baseline_calls: float
    candidate_calls: float
    #: added self time over the regression (None when the cell did not get slower)
    share: float | None

    @property
    def added_us(self) -> float:
        return self.candidate_us - self.baseline_us

    @property
    def calls_change(self) -> float:
        return self.candidate_calls - self.baseline_calls

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "phase": self.phase, "category": self.category,
                "baseline_us_per_step": self.baseline_us, "candidate_us_per_step": self.candidate_us,
                "added_us_per_step": self.added_us, "share_of_regression": self.share,
                "baseline_calls_per_step": self.baseline_calls,
                "candidate_calls_per_step": self.candidate_calls,
                "calls_change_per_step": self.calls_change}


@dataclass(frozen=True)
class CellOpDiff:
    """The diff of one cell: its step times, the regression in op time, the ops ranked."""

    cell_id: str
    label: str
    baseline_op_us: float
    candidate_op_us: float
    baseline_step_s: float | None
    candidate_step_s: float | None
    time_basis: str
    changes: tuple[OpChange, ...]  # largest added time first

    @property
    def regression_us(self) -> float:
        """Added op self time per step (µs); the shares are of this."""
        return self.candidate_op_us - self.baseline_op_us

    @property
    def slower(self) -> bool:
        """The cell got slower: its timed step time where both records give one, else its op time."""
        if self.baseline_step_s and self.candidate_step_s:
            return self.candidate_step_s > self.baseline_step_s
        return self.regression_us > 0

    @property
    def step_change_pct(self) -> float | None:
        if self.baseline_step_s and self.candidate_step_s:
            return (self.candidate_step_s / self.baseline_step_s - 1) * 100
        if self.baseline_op_us > 0:
            return (self.candidate_op_us / self.baseline_op_us - 1) * 100
        return None

    def culprits(self, top: int = 3) -> list[OpChange]:
        """The ops that added time, largest first, at most `top`."""
        return [c for c in self.changes if c.added_us > 0][:top]

    def headline(self, top: int = 2) -> str:
        """`aten::addmm (forward) +12.3 µs/step (81% of the regression)`, for the top ops."""
        parts = []
        for change in self.culprits(top):
            share = f" ({change.share * 100:.0f}% of the regression)" if change.share else ""
            calls = (f", calls {change.baseline_calls:g} -> {change.candidate_calls:g}"
                     if change.calls_change else "")
            parts.append(f"{change.op} ({change.phase}) +{change.added_us:.3g} µs/step"
                         f"{share}{calls}")
        return "; ".join(parts) if parts else "no op added time"

    def to_json(self) -> dict[str, Any]:
        return {"cell_id": self.cell_id, "label": self.label, "time_basis": self.time_basis,
                "baseline_step_s": self.baseline_step_s,
                "candidate_step_s": self.candidate_step_s,
                "step_change_pct": self.step_change_pct,
                "baseline_op_us_per_step": self.baseline_op_us,
                "candidate_op_us_per_step": self.candidate_op_us,
                "regression_us_per_step": self.regression_us, "slower": self.slower,
                "ops": [c.to_json() for c in self.changes]}


def diff_cell(baseline: CellProfile, candidate: CellProfile, label: str | None = None) -> CellOpDiff:
    """The op-level diff of `candidate` against `baseline` (two profiles of the same cell)."""
    base, cand = _by_op(baseline), _by_op(candidate)
    base_total, cand_total = total_op_time_us(baseline), total_op_time_us(candidate)
    regression = cand_total - base_total
    changes = []
    for key in {*base, *cand}:
        b = base.get(key, (0.0, 0.0, None))
        c = cand.get(key, (0.0, 0.0, None))
        added = c[0] - b[0]
        changes.append(OpChange(
            op=key[0], phase=key[1], category=c[2] or b[2] or "other",
            baseline_us=b[0], candidate_us=c[0], baseline_calls=b[1], candidate_calls=c[1],
            share=added / regression if regression > 0 else None))
    changes.sort(key=lambda ch: (-ch.added_us, ch.op, ch.phase))
    return CellOpDiff(
        cell_id=candidate.cell_id, label=label or _label(candidate) or candidate.cell_id,
        baseline_op_us=base_total, candidate_op_us=cand_total,
        baseline_step_s=baseline.step_time_s, candidate_step_s=candidate.step_time_s,
        time_basis=candidate.time_basis if candidate.time_basis == baseline.time_basis else "host",
        changes=tuple(changes))


def _by_op(profile: CellProfile) -> dict[tuple[str, str], tuple[float, float, str | None]]:
    out: dict[tuple[str, str], tuple[float, float, str | None]] = {}
    for row in profile.ops:
        key = (row.op, row.phase)
        us, calls, _ = out.get(key, (0.0, 0.0, None))
        out[key] = (us + profile.op_time_us(row), calls + row.calls_per_step, row.category)
    return out


def _label(profile: CellProfile) -> str | None:
    if not profile.axes:
        return None
    from bigtrain.cells.axes import compare_cell_label

    try:
        return compare_cell_label(profile.axes)
    except Exception:  # noqa: BLE001 - a label is a nicety; the cell id names the cell anyway
        return None


@dataclass(frozen=True)
class RunDiff:
    """`bigbench profile-diff A B`: the cells both sides profiled, diffed; what could not be."""

    baseline: Path
    candidate: Path
    cells: tuple[CellOpDiff, ...]  # every common valid cell, slowest change first
    invalid: Mapping[str, str]  # "side cell" -> why its profile is unusable
    only_baseline: tuple[str, ...]
    only_candidate: tuple[str, ...]

    #: a cell counts as slower when its step time rose by more than this (percent)
    min_change_pct: float = 0.0

    @property
    def slower(self) -> list[CellOpDiff]:
        """The cells whose step time rose by more than `min_change_pct`."""
        return [c for c in self.cells if c.slower
                and (c.step_change_pct is None or c.step_change_pct > self.min_change_pct)]

    def to_json(self) -> dict[str, Any]:
        return {"format_version": 1, "baseline": str(self.baseline),
                "candidate": str(self.candidate),
                "slower_cells": [c.to_json() for c in self.slower],
                "min_change_pct": self.min_change_pct,
                "other_cells": [c.to_json() for c in self.cells if c not in self.slower],
                "invalid": dict(self.invalid), "only_in_baseline": list(self.only_baseline),
                "only_in_candidate": list(self.only_candidate)}


def diff_runs(baseline: RunProfiles, candidate: RunProfiles,
              cell_ids: Sequence[str] | None = None, *, min_change_pct: float = 0.0) -> RunDiff:
    """Diff every cell both sides hold a valid profile of (or the `cell_ids` given); a cell is
    listed as slower when its step time rose by more than `min_change_pct`."""
    invalid = {f"baseline {k}": v for k, v in baseline.invalid.items()}
    invalid.update({f"candidate {k}": v for k, v in candidate.invalid.items()})
    common = [c for c in baseline.profiles if c in candidate.profiles
              and (cell_ids is None or c in cell_ids)]
    cells = [diff_cell(baseline.profiles[c], candidate.profiles[c]) for c in common]
    cells.sort(key=lambda d: (-(d.step_change_pct or 0.0), d.label, d.cell_id))
    return RunDiff(
        baseline=baseline.path, candidate=candidate.path, cells=tuple(cells), invalid=invalid,
        only_baseline=tuple(c for c in baseline.profiles if c not in candidate.profiles),
        only_candidate=tuple(c for c in candidate.profiles if c not in baseline.profiles),
        min_change_pct=min_change_pct)
