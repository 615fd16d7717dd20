"""What a comparison produces: the verdict names and the decided cells and metrics.

Pure data; the gate (gate.py) builds it and the renderers read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bigtrain.cells.axes import compare_cell_label
from bigtrain.compare.metrics import Metric
from bigtrain.compare.stats import IMPROVED, REGRESSED, UNCHANGED, UNDECIDED, Verdict

NEW = "new"
MISSING = "missing"
FAILED = "failed"
#: A flag, not a verdict: the cell's workload was redefined between the runs (both record a
#: `workload_version`, and they differ). Its metrics are still compared, so a gate never passes
#: because the code under test changed; every rendering names the flagged cells.
REDEFINED = "redefined"
#: Every verdict a cell or metric can get, worst first: the order of tables and of the summary.
#: `undecided`: the interval of the ratio still reaches past the threshold band -- paired rounds
#: (`bigbench ab`, bigtrain/compare/paired.py) not settled yet, or separate runs too noisy to tell.
VERDICT_ORDER = (REGRESSED, FAILED, MISSING, NEW, UNDECIDED, IMPROVED, UNCHANGED)
#: Verdicts that fail the gate (exit code 1). `undecided` is not evidence of a regression, so it
#: is not among them: what it does to the exit code is the `--undecided` policy's call
#: (bigtrain/compare/undecided.py: exit 3 by default), shown with the smallest detectable change.
GATING_VERDICTS = frozenset({REGRESSED, FAILED})


@dataclass(frozen=True)
class MetricComparison:
    """One metric of one cell, decided."""

    metric: Metric
    verdict: Verdict

    @property
    def outcome(self) -> str:
        return self.verdict.outcome


@dataclass(frozen=True)
class CellComparison:
    """One cell: its overall verdict (the worst of its metrics, or a status verdict)."""

    cell_id: str
    axes: Mapping[str, Any]
    outcome: str
    metrics: tuple[MetricComparison, ...] = ()
    note: str | None = None
    baseline_repeats: int = 0
    candidate_repeats: int = 0
    baseline_workload_version: str | None = None
    candidate_workload_version: str | None = None
    rounds: int | None = None  # paired rounds (`ab`): the rounds its verdict rests on

    @property
    def decided(self) -> bool:
        """False while the noise leaves the cell open (more paired rounds or repeats could
        decide it)."""
        return self.outcome != UNDECIDED

    @property
    def label(self) -> str:
        return cell_label(self.axes) if self.axes else self.cell_id

    @property
    def workload_redefined(self) -> bool:
        """Both sides record a workload version and they differ: the work itself changed."""
        return (self.baseline_workload_version is not None
                and self.candidate_workload_version is not None
                and self.baseline_workload_version != self.candidate_workload_version)

    @property
    def redefinition_note(self) -> str | None:
        """`workload redefined (v1 -> v2)` for a redefined cell, else None."""
        if not self.workload_redefined:
            return None
        return (f"workload redefined ({self.baseline_workload_version} -> "
                f"{self.candidate_workload_version})")


@dataclass(frozen=True)
class Comparison:
    """The whole comparison of a candidate against a baseline (two runs, or two record sets).

    The paths are None for records compared in memory (no run folder behind them).
    """

    baseline_run: str
    candidate_run: str
    baseline_path: str | None
    candidate_path: str | None
    thresholds_pct: Mapping[str, float]
    alpha: float
    cells: tuple[CellComparison, ...]
    hardware_differences: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # paired rounds (`bigbench ab`, bigtrain/compare/paired.py): how they were judged
    paired: bool = False
    rounds: int | None = None  # the most rounds any cell had
    max_rounds: int | None = None  # the cap alpha was spent over; None: open-ended spending
    family_size: int | None = None  # cell x metric tests alpha was split over
    #: A baseline cell with no record in the candidate fails the gate (`bigbench compare`
    #: without --allow-missing): a candidate that ran nothing must not go green.
    missing_fails: bool = False

    @classmethod
    def of(
        cls,
        cells: Iterable[CellComparison],
        *,
        baseline_run: str,
        candidate_run: str,
        baseline_path: str | None,
        candidate_path: str | None,
        thresholds_pct: Mapping[str, float],
        alpha: float,
        hardware_differences: Sequence[str] = (),
        warnings: Sequence[str] = (),
        paired: bool = False,
        rounds: int | None = None,
        max_rounds: int | None = None,
        family_size: int | None = None,
    ) -> Comparison:
        """The one way both gates (`compare_records`, `compare_paired`) build their result: the
        sides, the thresholds and alpha they judged by, the cells, what differs between the
        machines, and for paired rounds how they were judged."""
        return cls(
            baseline_run=baseline_run, candidate_run=candidate_run,
            baseline_path=baseline_path, candidate_path=candidate_path,
            thresholds_pct=thresholds_pct, alpha=alpha, cells=tuple(cells),
            hardware_differences=tuple(hardware_differences), warnings=tuple(warnings),
            paired=paired, rounds=rounds, max_rounds=max_rounds, family_size=family_size,
        )

    @property
    def all_decided(self) -> bool:
        """True when no cell is undecided: more rounds or repeats would change no verdict's kind."""
        return all(cell.decided for cell in self.cells)

    def counts(self) -> dict[str, int]:
        """How many cells got each verdict, in VERDICT_ORDER (every verdict, zeros included)."""
        counts = dict.fromkeys(VERDICT_ORDER, 0)
        for cell in self.cells:
            counts[cell.outcome] = counts.get(cell.outcome, 0) + 1
        return counts

    def redefined_cells(self) -> list[CellComparison]:
        """The cells whose workload was redefined between the runs (compared all the same)."""
        return [cell for cell in self.sorted_cells() if cell.workload_redefined]

    @property
    def gate_failed(self) -> bool:
        """True when any cell regressed or failed (or is missing, with `missing_fails`): the CI
        job should fail."""
        return any(cell.outcome in GATING_VERDICTS
                   or (self.missing_fails and cell.outcome == MISSING) for cell in self.cells)

    def sorted_cells(self) -> list[CellComparison]:
        """Cells worst first (regressed, failed, missing, new, undecided, improved, unchanged)."""
        rank = {v: i for i, v in enumerate(VERDICT_ORDER)}
        return sorted(self.cells, key=lambda c: (rank[c.outcome], c.label, c.cell_id))


def cell_label(axes: Mapping[str, Any]) -> str:
    """A short readable name of a cell from its axes (the project's one label builder)."""
    return compare_cell_label(axes)
