"""The regression gate: decide every cell and metric of a candidate against a baseline.

Cells are matched by `cell_id`; records of one cell with different `repeat` numbers are repeats
(independent worker processes). Each metric has its own direction and threshold; the decision
itself (threshold AND noise) lives in `bigtrain.compare.stats`. `compare_records` works on records in
memory (what `bigbench ab` holds round by round); `compare_runs` and `compare_run_dirs` add the
checks that need run folders (hardware fingerprint, incomplete runs) and call it.

Analysing side of the wall: never imports torch, pynvml or pandas.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bigtrain.compare.busy import busy_note
from bigtrain.compare.metrics import METRICS, Metric
from bigtrain.compare.result import (
    FAILED,
    MISSING,
    NEW,
    CellComparison,
    Comparison,
    MetricComparison,
)
from bigtrain.compare.thresholds import DEFAULT_THRESHOLD_PCT, parse_thresholds
from bigtrain.measure.envinfo import fingerprint_differences
from bigtrain.common.errors import BadInput
from bigtrain.results.schema import NOT_REACHED, STATUS_OK, CellRecord
from bigtrain.results.store import LoadedRun, load_run
from bigtrain.results.tuning import is_tuning_trial
from bigtrain.compare.stats import (
    DEFAULT_ALPHA,
    IMPROVED,
    REGRESSED,
    UNCHANGED,
    UNDECIDED,
    MetricSamples,
    decide,
)


def hardware_differences(
    baseline_env: Mapping[str, Any], candidate_env: Mapping[str, Any]
) -> tuple[str, ...]:
    """Human lines naming each fingerprint field that differs, `field: baseline -> candidate`."""
    return tuple(fingerprint_differences(baseline_env, candidate_env))


def group_repeats(records: Iterable[CellRecord]) -> dict[str, list[CellRecord]]:
    """Records by cell_id, one per repeat (a later line for the same repeat replaces an earlier).

    An lr search's trials are left out: kept in the run, they are not results
    (`bigtrain.results.tuning`), so no gate, pool or export counts them."""
    by_cell: dict[str, dict[int, CellRecord]] = {}
    for record in records:
        if is_tuning_trial(record):
            continue
        by_cell.setdefault(record.cell_id, {})[record.repeat] = record
    return {cell: [reps[k] for k in sorted(reps)] for cell, reps in by_cell.items()}


def workload_version(record: CellRecord) -> str | None:
    """The record's workload version, or None where it has none (records written before it)."""
    return record.workload_version


def _side_version(records: Sequence[CellRecord]) -> str | None:
    """The workload version of one side's repeats (distinct versions joined, in order)."""
    versions = sorted({v for v in map(workload_version, records) if v is not None})
    return ", ".join(versions) if versions else None


def compare_cell(
    cell_id: str,
    baseline: Sequence[CellRecord],
    candidate: Sequence[CellRecord],
    thresholds_pct: Mapping[str, float],
    alpha: float = DEFAULT_ALPHA,
) -> CellComparison:
    """Decide one cell from its baseline and candidate repeats (either side may be empty)."""
    any_record = (list(candidate) or list(baseline))[0]
    axes = any_record.axes()
    common = side_summary(baseline, candidate)
    settled = status_comparison(cell_id, axes, baseline, candidate, common)
    if settled is not None:
        return settled
    base_ok = [r for r in baseline if r.status == STATUS_OK]
    cand_ok = [r for r in candidate if r.status == STATUS_OK]

    metrics = []
    for metric in METRICS:
        base_samples = _samples(metric, base_ok)
        cand_samples = _samples(metric, cand_ok)
        if base_samples is None or cand_samples is None:
            continue  # absent in either run: nothing to compare
        verdict = decide(
            base_samples,
            cand_samples,
            higher_is_better=metric.higher_is_better,
            threshold_pct=thresholds_pct.get(metric.name, DEFAULT_THRESHOLD_PCT),
            alpha=alpha,
            gate_without_test=metric.steady,
        )
        metrics.append(MetricComparison(metric, verdict))
    outcomes = {m.outcome for m in metrics}
    # worst first, as paired cells: a regression anywhere decides the cell; else a metric the noise
    # left open keeps the whole cell from reading as a clean improvement or as unchanged
    outcome = next((o for o in (REGRESSED, UNDECIDED, IMPROVED) if o in outcomes), UNCHANGED)
    note = None if metrics else "no metric present in both runs"
    return CellComparison(cell_id, axes, outcome, tuple(metrics), note, **common)


def side_summary(baseline: Sequence[CellRecord], candidate: Sequence[CellRecord]) -> dict[str, Any]:
    """The repeat counts and workload versions of both sides, as CellComparison fields."""
    return {
        "baseline_repeats": len(baseline),
        "candidate_repeats": len(candidate),
        "baseline_workload_version": _side_version(baseline),
        "candidate_workload_version": _side_version(candidate),
    }


def status_comparison(
    cell_id: str,
    axes: Mapping[str, Any],
    baseline: Sequence[CellRecord],
    candidate: Sequence[CellRecord],
    common: Mapping[str, Any],
) -> CellComparison | None:
    """The cell's verdict when the records' statuses settle it, else None (compare the metrics).

    Missing on a side, failed in the candidate where the baseline was ok, a converge cell that
    reached its target in the baseline and not in the candidate (a regression of the thing
    measured), or not ok on either side. Shared by `compare` and the paired rounds of `ab`.
    """
    base_ok = [r for r in baseline if r.status == STATUS_OK]
    cand_ok = [r for r in candidate if r.status == STATUS_OK]
    cand_not_ok = [r for r in candidate if r.status != STATUS_OK]
    if not candidate:
        return CellComparison(cell_id, axes, MISSING, note="not in the candidate run", **common)
    if not baseline:
        return CellComparison(cell_id, axes, NEW, note="not in the baseline run", **common)
    if base_ok and cand_not_ok:
        broken = [r for r in cand_not_ok if r.status != NOT_REACHED]
        if not broken:
            worst = cand_not_ok[0]
            note = (f"target reached in the baseline, not in the candidate (repeat "
                    f"{worst.repeat}): {worst.reason}")
            return CellComparison(cell_id, axes, REGRESSED, note=note, **common)
        worst = broken[0]
        note = f"{worst.status} in the candidate (repeat {worst.repeat}): {worst.reason}"
        return CellComparison(cell_id, axes, FAILED, note=note, **common)
    if not base_ok and not cand_ok:
        note = f"not ok in either run ({baseline[0].status} -> {candidate[0].status})"
        return CellComparison(cell_id, axes, UNCHANGED, note=note, **common)
    if not base_ok:
        note = f"{baseline[0].status} in the baseline ({baseline[0].reason}); ok now"
        return CellComparison(cell_id, axes, NEW, note=note, **common)
    return None


def _samples(metric: Metric, records: Sequence[CellRecord]) -> MetricSamples | None:
    values = [metric.value(r) for r in records]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    within: list[float] = []
    for record in records:
        within.extend(metric.steps(record))
    return MetricSamples(per_repeat=tuple(float(v) for v in values), within=tuple(within))


def compare_records(
    baseline: Iterable[CellRecord],
    candidate: Iterable[CellRecord],
    *,
    baseline_run: str = "baseline",
    candidate_run: str = "candidate",
    baseline_path: str | None = None,
    candidate_path: str | None = None,
    thresholds_pct: Mapping[str, float] | None = None,
    alpha: float = DEFAULT_ALPHA,
    hardware_differences: Sequence[str] = (),
    warnings: Sequence[str] = (),
) -> Comparison:
    """Compare every cell of two sets of records (in memory or loaded from run folders).

    Raises BadInput when both sides have cells but none in common: every cell "missing" and "new"
    would pass the gate while comparing nothing.
    """
    thresholds = dict(thresholds_pct or parse_thresholds(None))
    base_cells = group_repeats(baseline)
    cand_cells = group_repeats(candidate)
    if base_cells and cand_cells and not set(base_cells) & set(cand_cells):
        raise BadInput(
            f"no cell of {candidate_path or candidate_run} matches a cell of "
            f"{baseline_path or baseline_run}: cells match by their axes (model, optimizer, "
            f"impl, batch norm, precision, device, batch size, compile); were they swept with "
            f"different presets or devices?"
        )
    cells = (
        compare_cell(cell_id, base_cells.get(cell_id, []), cand_cells.get(cell_id, []),
                     thresholds, alpha)
        for cell_id in sorted(set(base_cells) | set(cand_cells))
    )
    return Comparison.of(
        cells, baseline_run=baseline_run, candidate_run=candidate_run,
        baseline_path=baseline_path, candidate_path=candidate_path, thresholds_pct=thresholds,
        alpha=alpha, hardware_differences=hardware_differences, warnings=warnings,
    )


def compare_runs(
    baseline: LoadedRun | Sequence[LoadedRun],
    candidate: LoadedRun | Sequence[LoadedRun],
    *,
    thresholds_pct: Mapping[str, float] | None = None,
    alpha: float = DEFAULT_ALPHA,
    allow_different_hardware: bool = False,
) -> Comparison:
    """Compare every cell of two loaded runs, or of several runs a side pooled (see pool_records).

    Raises BadInput listing what differs when the hardware fingerprints differ (between any two of
    the folders), unless `allow_different_hardware` (then the differences are carried in the
    result and shown).
    """
    base_runs, cand_runs = _as_runs(baseline), _as_runs(candidate)
    differences, warnings = check_runs(base_runs, cand_runs,
                                       allow_different_hardware=allow_different_hardware)
    return compare_records(
        pool_records(base_runs),
        pool_records(cand_runs),
        baseline_run=_joined(r.manifest.run_id for r in base_runs),
        candidate_run=_joined(r.manifest.run_id for r in cand_runs),
        baseline_path=_joined(str(r.path) for r in base_runs),
        candidate_path=_joined(str(r.path) for r in cand_runs),
        thresholds_pct=thresholds_pct,
        alpha=alpha,
        hardware_differences=differences,
        warnings=warnings,
    )


def check_runs(
    baseline: Sequence[LoadedRun],
    candidate: Sequence[LoadedRun],
    *,
    allow_different_hardware: bool = False,
) -> tuple[tuple[str, ...], list[str]]:
    """The fingerprint differences between the folders and the warnings about their state.

    Every folder is checked against the first baseline folder. Raises BadInput naming the folders
    and what differs, unless `allow_different_hardware`.
    """
    reference = baseline[0]
    differences: list[str] = []
    for run in (*baseline[1:], *candidate):
        for line in hardware_differences(reference.manifest.environment,
                                         run.manifest.environment):
            differences.append(line if len(baseline) == len(candidate) == 1
                               else f"{run.path}: {line}")
    if differences and not allow_different_hardware:
        others = ", ".join(str(r.path) for r in (*baseline[1:], *candidate))
        raise BadInput(
            f"{reference.path} and {others} were measured on different hardware or "
            f"software: {'; '.join(differences)}. Timings would not be comparable; pass "
            f"--allow-different-hardware to compare anyway"
        )
    warnings = []
    for run in (*baseline, *candidate):
        if run.manifest.state != "complete":
            warnings.append(f"{run.path}: run is {run.manifest.state}, not complete")
        if run.truncated_lines:
            warnings.append(f"{run.path}: truncated record set aside at line(s) "
                            f"{', '.join(map(str, run.truncated_lines))}")
        busy = busy_note(run.records, str(run.path))
        if busy:
            warnings.append(busy)
    return tuple(differences), warnings


def pool_records(runs: Sequence[LoadedRun]) -> list[CellRecord]:
    """The records of several runs of one side as repeats of their cells.

    Each folder's repeats of a cell are renumbered after the previous folders' (folder order,
    then repeat order), so repeat 0 of two folders stays two repeats.
    """
    if len(runs) == 1:
        return list(runs[0].records)
    pooled: list[CellRecord] = []
    next_repeat: dict[str, int] = {}
    for run in runs:
        for cell_id, records in group_repeats(run.records).items():
            start = next_repeat.get(cell_id, 0)
            pooled.extend(replace(record, repeat=start + i) for i, record in enumerate(records))
            next_repeat[cell_id] = start + len(records)
    return pooled


def compare_run_dirs(
    baseline_dir: Path | str | Sequence[Path | str],
    candidate_dir: Path | str | Sequence[Path | str],
    **options: Any,
) -> Comparison:
    """Load two run folders (or several a side, pooled) and compare them (see compare_runs)."""
    return compare_runs(load_runs(baseline_dir), load_runs(candidate_dir), **options)


def load_runs(dirs: Path | str | Sequence[Path | str]) -> list[LoadedRun]:
    """One or several run folders, loaded."""
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    return [load_run(Path(d)) for d in dirs]


def _as_runs(runs: LoadedRun | Sequence[LoadedRun]) -> list[LoadedRun]:
    if isinstance(runs, LoadedRun):
        return [runs]
    if not runs:
        raise BadInput("no run folder given for a side of the comparison")
    return list(runs)


def _joined(parts: Iterable[str]) -> str:
    return " + ".join(parts)
