"""Compare two runs cell by cell and metric by metric: the regression gate behind `bigbench compare`.

Cells are matched by `cell_id`; records of one cell with different `repeat` numbers are repeats
(independent worker processes). Each metric has its own direction, and its own threshold; the
decision itself (threshold AND noise) lives in `bigtrain.stats`. This module only gathers the
samples, applies the verdicts of the contract (regressed, improved, unchanged, new, missing,
failed) and renders the result for a terminal, for Markdown (CI summaries, PR comments) and as JSON.

Analysing side of the wall: never imports torch, pynvml or pandas.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigtrain.envinfo import fingerprint_differences
from bigtrain.errors import BadInput
from bigtrain.results.schema import AXES, STATUS_OK, CellRecord
from bigtrain.results.store import LoadedRun, load_run
from bigtrain.stats import (
    DEFAULT_ALPHA,
    IMPROVED,
    REGRESSED,
    UNCHANGED,
    MetricSamples,
    Verdict,
    decide,
)

NEW = "new"
MISSING = "missing"
FAILED = "failed"
#: Every verdict a cell or metric can get, worst first: the order of tables and of the summary.
VERDICT_ORDER = (REGRESSED, FAILED, MISSING, NEW, IMPROVED, UNCHANGED)
#: Verdicts that fail the gate (exit code 1).
GATING_VERDICTS = frozenset({REGRESSED, FAILED})

DEFAULT_THRESHOLD_PCT = 5.0
JSON_FORMAT_VERSION = 1


# -- metrics -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    """One comparable number of a record: how to read it, its unit and its direction."""

    name: str  # the key for --threshold
    label: str
    unit: str  # s, items/s, bytes, J
    higher_is_better: bool
    value: Callable[[CellRecord], float | None]
    steps: Callable[[CellRecord], tuple[float, ...]] = field(default=lambda record: ())
    # Steady from run to run (memory): one value a side may gate on the threshold alone.
    steady: bool = False


def _step_median(record: CellRecord) -> float | None:
    return record.step_time_s.median if record.step_time_s else None


def _per_step_throughput(record: CellRecord) -> tuple[float, ...]:
    if not record.items_per_step:
        return ()
    return tuple(record.items_per_step / s for s in record.step_times_s if s > 0)


def _optimizer_time(record: CellRecord) -> float | None:
    return record.phase_time_s.optimizer if record.phase_time_s else None


def _energy_per_step(record: CellRecord) -> float | None:
    """Energy per step in joules from the telemetry; None for a window NVML could not resolve."""
    telemetry = record.telemetry or {}
    per_step = telemetry.get("joules_per_step")
    if telemetry.get("valid") is False or not isinstance(per_step, (int, float)):
        return None
    return float(per_step)


def _optimizer_steps(record: CellRecord) -> tuple[float, ...]:
    return tuple((record.phase_times_s or {}).get("optimizer", ()))


METRICS: tuple[Metric, ...] = (
    Metric("step_time", "step time", "s", False, _step_median, lambda r: r.step_times_s),
    Metric("items_per_s", "throughput", "items/s", True, lambda r: r.items_per_s,
           _per_step_throughput),
    Metric("optimizer_time", "optimizer step", "s", False, _optimizer_time, _optimizer_steps),
    Metric("peak_mem", "peak memory allocated", "bytes", False,
           lambda r: r.peak_mem_allocated_bytes, steady=True),
    Metric("peak_rss", "peak host RSS", "bytes", False, lambda r: r.peak_rss_bytes, steady=True),
    Metric("energy_per_step", "energy per step", "J", False, _energy_per_step),
)
METRIC_NAMES = tuple(m.name for m in METRICS)
_METRICS_BY_NAME = {m.name: m for m in METRICS}


# -- thresholds ----------------------------------------------------------------------------------
_PCT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%?\s*$")


def parse_thresholds(spec: str | None) -> dict[str, float]:
    """Per-metric thresholds in percent from `5%` (all metrics) or `step_time=5%,peak_mem=2%`.

    Metrics not named keep the default (5%, or a bare value given in the same spec). Raises
    BadInput naming the bad part and the valid metric names.
    """
    thresholds = {name: DEFAULT_THRESHOLD_PCT for name in METRIC_NAMES}
    if spec is None or not spec.strip():
        return thresholds
    named: dict[str, float] = {}
    for part in spec.split(","):
        if not part.strip():
            raise BadInput(
                f"--threshold {spec!r}: empty entry; write e.g. 5% or step_time=5%,peak_mem=2% "
                f"(metrics: {', '.join(METRIC_NAMES)})"
            )
        if "=" in part:
            name, _, value = part.partition("=")
            name = name.strip()
            if name not in _METRICS_BY_NAME:
                raise BadInput(
                    f"--threshold {spec!r}: unknown metric {name!r}; valid metrics: "
                    f"{', '.join(METRIC_NAMES)}"
                )
            named[name] = _parse_pct(value, spec)
        else:
            default = _parse_pct(part, spec)
            thresholds = {name: default for name in METRIC_NAMES}
    thresholds.update(named)
    return thresholds


def _parse_pct(text: str, spec: str) -> float:
    match = _PCT.match(text)
    if not match:
        raise BadInput(
            f"--threshold {spec!r}: {text.strip()!r} is not a percentage; write e.g. 5% or "
            f"step_time=5%,peak_mem=2% (metrics: {', '.join(METRIC_NAMES)})"
        )
    return float(match.group(1))


# -- hardware ------------------------------------------------------------------------------------
def hardware_differences(
    baseline_env: Mapping[str, Any], candidate_env: Mapping[str, Any]
) -> tuple[str, ...]:
    """Human lines naming each fingerprint field that differs, `field: baseline -> candidate`."""
    return tuple(fingerprint_differences(baseline_env, candidate_env))


# -- the comparison ------------------------------------------------------------------------------
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

    @property
    def label(self) -> str:
        return cell_label(self.axes) if self.axes else self.cell_id


@dataclass(frozen=True)
class Comparison:
    """The whole comparison of a candidate run against a baseline run."""

    baseline_run: str
    candidate_run: str
    baseline_path: str
    candidate_path: str
    thresholds_pct: Mapping[str, float]
    alpha: float
    cells: tuple[CellComparison, ...]
    hardware_differences: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """How many cells got each verdict, in VERDICT_ORDER."""
        counts = dict.fromkeys(VERDICT_ORDER, 0)
        for cell in self.cells:
            counts[cell.outcome] += 1
        return counts

    @property
    def gate_failed(self) -> bool:
        """True when any cell regressed or failed: the CI job should fail."""
        return any(cell.outcome in GATING_VERDICTS for cell in self.cells)

    def sorted_cells(self) -> list[CellComparison]:
        """Cells worst first (regressed, failed, missing, new, improved, unchanged), then by id."""
        rank = {v: i for i, v in enumerate(VERDICT_ORDER)}
        return sorted(self.cells, key=lambda c: (rank[c.outcome], c.label, c.cell_id))


def cell_label(axes: Mapping[str, Any]) -> str:
    """A short readable name of a cell from its axes."""
    label = (
        f"{axes.get('model')} {axes.get('optimizer')}/{axes.get('impl')} "
        f"{axes.get('precision')} {axes.get('device')} bs{axes.get('batch_size')}"
    )
    if str(axes.get("batch_norm")) in ("on", "True", "true"):
        label += " bn"
    if str(axes.get("compile")) in ("on", "True", "true"):
        label += " compiled"
    return label


def group_repeats(records: Iterable[CellRecord]) -> dict[str, list[CellRecord]]:
    """Records by cell_id, one per repeat (a later line for the same repeat replaces an earlier)."""
    by_cell: dict[str, dict[int, CellRecord]] = {}
    for record in records:
        by_cell.setdefault(record.cell_id, {})[record.repeat] = record
    return {cell: [reps[k] for k in sorted(reps)] for cell, reps in by_cell.items()}


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
    base_ok = [r for r in baseline if r.status == STATUS_OK]
    cand_ok = [r for r in candidate if r.status == STATUS_OK]
    cand_not_ok = [r for r in candidate if r.status != STATUS_OK]
    counts = {"baseline_repeats": len(baseline), "candidate_repeats": len(candidate)}
    if not candidate:
        return CellComparison(cell_id, axes, MISSING, note="not in the candidate run", **counts)
    if not baseline:
        return CellComparison(cell_id, axes, NEW, note="not in the baseline run", **counts)
    if base_ok and cand_not_ok:
        worst = cand_not_ok[0]
        note = f"{worst.status} in the candidate (repeat {worst.repeat}): {worst.reason}"
        return CellComparison(cell_id, axes, FAILED, note=note, **counts)
    if not base_ok and not cand_ok:
        note = f"not ok in either run ({baseline[0].status} -> {candidate[0].status})"
        return CellComparison(cell_id, axes, UNCHANGED, note=note, **counts)
    if not base_ok:
        note = f"{baseline[0].status} in the baseline ({baseline[0].reason}); ok now"
        return CellComparison(cell_id, axes, NEW, note=note, **counts)

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
    outcome = REGRESSED if REGRESSED in outcomes else IMPROVED if IMPROVED in outcomes else UNCHANGED
    note = None if metrics else "no metric present in both runs"
    return CellComparison(cell_id, axes, outcome, tuple(metrics), note, **counts)


def _samples(metric: Metric, records: Sequence[CellRecord]) -> MetricSamples | None:
    values = [metric.value(r) for r in records]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    within: list[float] = []
    for record in records:
        within.extend(metric.steps(record))
    return MetricSamples(per_repeat=tuple(float(v) for v in values), within=tuple(within))


def compare_runs(
    baseline: LoadedRun,
    candidate: LoadedRun,
    *,
    thresholds_pct: Mapping[str, float] | None = None,
    alpha: float = DEFAULT_ALPHA,
    allow_different_hardware: bool = False,
) -> Comparison:
    """Compare every cell of two loaded runs.

    Raises BadInput listing what differs when the hardware fingerprints differ, unless
    `allow_different_hardware` (then the differences are carried in the result and shown).
    """
    thresholds = dict(thresholds_pct or parse_thresholds(None))
    differences = hardware_differences(
        baseline.manifest.environment, candidate.manifest.environment
    )
    if differences and not allow_different_hardware:
        raise BadInput(
            f"{baseline.path} and {candidate.path} were measured on different hardware or "
            f"software: {'; '.join(differences)}. Timings would not be comparable; pass "
            f"--allow-different-hardware to compare anyway"
        )
    warnings = []
    for run in (baseline, candidate):
        if run.manifest.state != "complete":
            warnings.append(f"{run.path}: run is {run.manifest.state}, not complete")
        if run.truncated_lines:
            warnings.append(f"{run.path}: truncated record set aside at line(s) "
                            f"{', '.join(map(str, run.truncated_lines))}")
    base_cells = group_repeats(baseline.records)
    cand_cells = group_repeats(candidate.records)
    if base_cells and cand_cells and not set(base_cells) & set(cand_cells):
        # Every cell "missing" and "new" would pass the gate while comparing nothing.
        raise BadInput(
            f"no cell of {candidate.path} matches a cell of {baseline.path}: cells match by "
            f"their axes (model, optimizer, impl, batch norm, precision, device, batch size, "
            f"compile); were they swept with different presets or devices?"
        )
    cells = tuple(
        compare_cell(cell_id, base_cells.get(cell_id, []), cand_cells.get(cell_id, []),
                     thresholds, alpha)
        for cell_id in sorted(set(base_cells) | set(cand_cells))
    )
    return Comparison(
        baseline_run=baseline.manifest.run_id,
        candidate_run=candidate.manifest.run_id,
        baseline_path=str(baseline.path),
        candidate_path=str(candidate.path),
        thresholds_pct=thresholds,
        alpha=alpha,
        cells=cells,
        hardware_differences=differences,
        warnings=tuple(warnings),
    )


def compare_run_dirs(
    baseline_dir: Path | str, candidate_dir: Path | str, **options: Any
) -> Comparison:
    """Load two run folders and compare them (see compare_runs for the options)."""
    return compare_runs(load_run(Path(baseline_dir)), load_run(Path(candidate_dir)), **options)


# -- rendering -----------------------------------------------------------------------------------
def format_value(value: float, unit: str) -> str:
    """A metric value with a readable unit (ms for short times, MiB for memory)."""
    if unit == "s":
        if abs(value) < 1:
            return f"{value * 1e3:.4g} ms"
        return f"{value:.4g} s"
    if unit == "bytes":
        return f"{value / 2**20:.4g} MiB"
    return f"{value:.4g} {unit}"


def format_change(verdict: Verdict) -> str:
    """Signed change of the raw number, e.g. `+10.2%`."""
    if math.isinf(verdict.change_pct):
        return "+inf%" if verdict.change_pct > 0 else "-inf%"
    return f"{verdict.change_pct:+.1f}%"


@dataclass(frozen=True)
class Row:
    """One line of the rendered table: a metric of a cell, or a cell without metrics."""

    outcome: str
    cell: str
    metric: str
    baseline: str
    candidate: str
    change: str
    evidence: str


def table_rows(comparison: Comparison) -> list[Row]:
    """The rows of every rendering, worst first: regressed metrics before everything else."""
    rank = {v: i for i, v in enumerate(VERDICT_ORDER)}
    rows: list[tuple[tuple[int, int], Row]] = []
    for cell_index, cell in enumerate(comparison.sorted_cells()):
        if not cell.metrics:
            rows.append(((rank[cell.outcome], cell_index),
                         Row(cell.outcome, cell.label, "-", "", "", "", cell.note or "")))
            continue
        for m in cell.metrics:
            v = m.verdict
            rows.append((
                (rank[m.outcome], cell_index),
                Row(
                    outcome=m.outcome,
                    cell=cell.label,
                    metric=m.metric.name,
                    baseline=format_value(v.baseline_median, m.metric.unit),
                    candidate=format_value(v.candidate_median, m.metric.unit),
                    change=f"{format_change(v)} (limit {v.threshold_pct:g}%)",
                    evidence=v.explain(),
                ),
            ))
    return [row for _, row in sorted(rows, key=lambda item: item[0])]


def summary_line(comparison: Comparison) -> str:
    """`2 regressed, 1 failed, ... (of N cells)` with only the non-zero verdicts."""
    counts = comparison.counts()
    parts = [f"{n} {verdict}" for verdict, n in counts.items() if n]
    return f"{', '.join(parts) or 'nothing to compare'} (of {len(comparison.cells)} cells)"


def thresholds_line(comparison: Comparison) -> str:
    """`threshold 5% (peak_mem 2%)`: the common threshold and the exceptions."""
    values = list(comparison.thresholds_pct.values())
    common = max(set(values), key=values.count) if values else DEFAULT_THRESHOLD_PCT
    others = [f"{k} {v:g}%" for k, v in comparison.thresholds_pct.items() if v != common]
    line = f"threshold {common:g}%"
    if others:
        line += f" ({', '.join(others)})"
    return f"{line}; noise test at alpha={comparison.alpha:g}"


def render_terminal(comparison: Comparison, console: Any = None) -> None:
    """Print the verdict table (regressions first) with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    styles = {REGRESSED: "bold red", FAILED: "bold red", MISSING: "yellow", NEW: "cyan",
              IMPROVED: "green", UNCHANGED: "dim"}
    table = Table(
        title=f"{comparison.baseline_run} -> {comparison.candidate_run}",
        caption=thresholds_line(comparison),
    )
    for column in ("verdict", "cell", "metric", "baseline", "candidate", "change", "evidence"):
        table.add_column(column, overflow="fold")
    for row in table_rows(comparison):
        table.add_row(
            f"[{styles[row.outcome]}]{row.outcome}[/]", row.cell, row.metric, row.baseline,
            row.candidate, row.change, row.evidence,
        )
    for line in comparison.hardware_differences:
        console.print(f"[yellow]different hardware/software:[/] {line}")
    for line in comparison.warnings:
        console.print(f"[yellow]warning:[/] {line}")
    console.print(table)
    verdict_style = "bold red" if comparison.gate_failed else "bold green"
    console.print(f"[{verdict_style}]{summary_line(comparison)}[/]")


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


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


def render_markdown(comparison: Comparison) -> str:
    """Markdown for a CI summary or PR comment: gating rows in the open, the rest folded."""
    rows = table_rows(comparison)
    gating = [r for r in rows if r.outcome in GATING_VERDICTS]
    rest = [r for r in rows if r.outcome not in GATING_VERDICTS]
    icon = ":x:" if comparison.gate_failed else ":white_check_mark:"
    lines = [
        f"## {icon} bigbench compare: `{comparison.baseline_run}` -> `{comparison.candidate_run}`",
        "",
        f"**{summary_line(comparison)}**; {thresholds_line(comparison)}.",
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


def to_json(comparison: Comparison) -> dict[str, Any]:
    """The comparison as a JSON-ready dict, for machines."""
    cells = []
    for cell in comparison.sorted_cells():
        cells.append({
            "cell_id": cell.cell_id,
            "label": cell.label,
            "axes": {k: cell.axes.get(k) for k in AXES},
            "verdict": cell.outcome,
            "note": cell.note,
            "baseline_repeats": cell.baseline_repeats,
            "candidate_repeats": cell.candidate_repeats,
            "metrics": [
                {
                    "metric": m.metric.name,
                    "unit": m.metric.unit,
                    "higher_is_better": m.metric.higher_is_better,
                    "verdict": m.outcome,
                    "baseline_median": m.verdict.baseline_median,
                    "candidate_median": m.verdict.candidate_median,
                    "ratio": _finite_or_none(m.verdict.ratio),
                    "change_pct": _finite_or_none(m.verdict.change_pct),
                    "threshold_pct": m.verdict.threshold_pct,
                    "method": m.verdict.method,
                    "p_value": m.verdict.p_value,
                    "ratio_interval": (
                        [m.verdict.ratio_low, m.verdict.ratio_high]
                        if m.verdict.ratio_low is not None else None
                    ),
                    "confidence": 1 - m.verdict.alpha,
                    "baseline_n": m.verdict.baseline_n,
                    "candidate_n": m.verdict.candidate_n,
                }
                for m in cell.metrics
            ],
        })
    return {
        "format_version": JSON_FORMAT_VERSION,
        "baseline": {"run_id": comparison.baseline_run, "path": comparison.baseline_path},
        "candidate": {"run_id": comparison.candidate_run, "path": comparison.candidate_path},
        "thresholds_pct": dict(comparison.thresholds_pct),
        "alpha": comparison.alpha,
        "gate_failed": comparison.gate_failed,
        "counts": comparison.counts(),
        "hardware_differences": list(comparison.hardware_differences),
        "warnings": list(comparison.warnings),
        "cells": cells,
    }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
