"""Where a cell's step time goes, by category x phase, and the "why" line of two cells that differ
in one axis: "batch norm on vs off: +41% step time, 78% of it in normalization (backward)".

Pure functions of loaded profiles (`bigtrain.profiles.load`): the figures are op self times per
step on the profile's time basis (device time from a CUDA trace, else host time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bigtrain.profiles.load import CellProfile

#: Axes a "why" pair may differ in, in the order the report lists them (the optimizer's
#: implementation and batch norm first: the questions the suite is asked most).
WHY_AXES = ("batch_norm", "impl", "precision", "compile", "cuda_graphs", "optimizer",
            "batch_size", "world_size", "model")
#: Axes whose difference makes a pair's profiles incomparable op by op.
_IGNORED_AXES = ("device",)


def time_by_category_phase(profile: CellProfile) -> dict[tuple[str, str], float]:
    """(category, phase) -> self µs per step, over every op of the profile."""
    out: dict[tuple[str, str], float] = {}
    for row in profile.ops:
        key = (row.category, row.phase)
        out[key] = out.get(key, 0.0) + profile.op_time_us(row)
    return out


def total_op_time_us(profile: CellProfile) -> float:
    """The sum of every op's self time per step (µs)."""
    return sum(profile.op_time_us(row) for row in profile.ops)


@dataclass(frozen=True)
class Why:
    """Where the step-time difference of `candidate` against `baseline` went."""

    axis: str
    baseline_value: str
    candidate_value: str
    baseline_cell: str
    candidate_cell: str
    #: change of the timed (unprofiled) step time, percent; from the profiled window when a
    #: record is missing
    step_change_pct: float | None
    #: the difference the shares are of, in µs per step (profiled window)
    delta_us: float
    #: (category, phase, µs per step added, share of delta_us) largest share first
    parts: tuple[tuple[str, str, float, float], ...]
    time_basis: str

    @property
    def line(self) -> str:
        """The one-line answer."""
        change = (f"{self.step_change_pct:+.0f}% step time" if self.step_change_pct is not None
                  else f"{self.delta_us:+.1f} µs per step")
        head = f"{_axis_words(self.axis)} {self.candidate_value} vs {self.baseline_value}: {change}"
        if not self.parts or self.delta_us == 0:
            return f"{head}; no difference in op time to attribute"
        category, phase, _, share = self.parts[0]
        return f"{head}, {share * 100:.0f}% of it in {category} ({phase})"


def _axis_words(axis: str) -> str:
    return {"batch_norm": "batch norm", "impl": "implementation", "batch_size": "batch size",
            "cuda_graphs": "CUDA graphs", "world_size": "world size"}.get(axis, axis)


def why(baseline: CellProfile, candidate: CellProfile, axis: str) -> Why:
    """Attribute the step-time difference of `candidate` over `baseline` to category x phase.

    The shares are of the profiled step-time difference where both summaries give one and it
    has the sign of the op-time difference (the rest is time outside any op: Python, idle);
    otherwise of the op-time difference itself; and where the parts that moved the same way add
    up to more than that (others moved the other way), of those parts' sum, so that no share
    passes 100%."""
    base, cand = time_by_category_phase(baseline), time_by_category_phase(candidate)
    deltas = {key: cand.get(key, 0.0) - base.get(key, 0.0) for key in {*base, *cand}}
    op_delta = sum(deltas.values())
    delta = op_delta
    b_step, c_step = baseline.step_time_s_profiled, candidate.step_time_s_profiled
    if b_step is not None and c_step is not None:
        step_delta = (c_step - b_step) * 1e6
        if step_delta != 0 and (step_delta > 0) == (op_delta > 0):
            delta = step_delta
    parts = []
    if delta != 0:
        same_way = [(k, v) for k, v in deltas.items() if v != 0 and (v > 0) == (delta > 0)]
        # When other categories moved the other way (or the profiled step moved less than its
        # ops: noise, overlap), the same-way parts add up to more than the step's difference;
        # shares of the larger of the two never pass 100% ("591% of it" reads as a bug).
        gross = sum(v for _, v in same_way)
        of = delta if abs(delta) >= abs(gross) else gross
        for (category, phase), value in sorted(same_way, key=lambda kv: (-abs(kv[1]), kv[0])):
            parts.append((category, phase, value, value / of))
    if baseline.step_time_s and candidate.step_time_s:
        change = (candidate.step_time_s / baseline.step_time_s - 1) * 100
    elif b_step and c_step:
        change = (c_step / b_step - 1) * 100
    else:
        change = None
    return Why(axis=axis, baseline_value=str(baseline.axes.get(axis)),
               candidate_value=str(candidate.axes.get(axis)), baseline_cell=baseline.cell_id,
               candidate_cell=candidate.cell_id, step_change_pct=change, delta_us=delta,
               parts=tuple(parts), time_basis=candidate.time_basis)


def one_axis_pairs(profiles: Iterable[CellProfile],
                   axes: Sequence[str] = WHY_AXES) -> list[tuple[str, CellProfile, CellProfile]]:
    """(axis, baseline, candidate) for every two profiled cells whose axes differ in exactly one
    of `axes` (the device aside); the slower cell is the candidate, so each line reads as what
    the change cost."""
    cells = [p for p in profiles if p.axes]
    pairs = []
    for i, first in enumerate(cells):
        for second in cells[i + 1:]:
            differing = [a for a in {*first.axes, *second.axes}
                         if a not in _IGNORED_AXES and first.axes.get(a) != second.axes.get(a)]
            if len(differing) != 1 or differing[0] not in axes:
                continue
            base, cand = sorted((first, second), key=lambda p: (_step(p), p.cell_id))
            pairs.append((differing[0], base, cand))
    order = {a: i for i, a in enumerate(axes)}
    pairs.sort(key=lambda t: (order[t[0]], str(t[1].axes.get("model")), t[1].cell_id,
                              t[2].cell_id))
    return pairs


def _step(profile: CellProfile) -> float:
    return profile.step_time_s or profile.step_time_s_profiled or total_op_time_us(profile) / 1e6


def why_lines(profiles: Mapping[str, CellProfile], *, limit: int = 20) -> list[Why]:
    """The "why" of every one-axis pair among `profiles`, at most `limit`, in the order of
    `one_axis_pairs` (by axis, then model)."""
    return [why(base, cand, axis) for axis, base, cand in one_axis_pairs(profiles.values())][:limit]
