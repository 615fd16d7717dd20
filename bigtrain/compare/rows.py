"""What every rendering of a comparison shares: formatted values, the table rows, summary lines."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bigtrain.compare.result import VERDICT_ORDER, Comparison
from bigtrain.compare.thresholds import DEFAULT_THRESHOLD_PCT
from bigtrain.compare.stats import CENTER_GEOMEAN, Verdict


def format_value(value: float, unit: str) -> str:
    """A metric value with a readable unit (ms for short times, MiB for memory, `27,720 items/s`)."""
    if not math.isfinite(value):
        return f"{value} {unit}"
    if unit == "s":
        if abs(value) < 1:
            return f"{_plain(value * 1e3)} ms"
        return f"{_plain(value)} s"
    if unit == "bytes":
        return f"{_plain(value / 2**20)} MiB"
    return f"{_plain(value)} {unit}"


def _plain(number: float) -> str:
    """Four significant digits without exponent notation: `27,720`, `412.3`, `0.01234`."""
    if number == 0:
        return "0"
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    decimals = max(0, 3 - math.floor(math.log10(abs(number))))
    return f"{number:.{decimals}f}"


def format_shown(verdict: Verdict, unit: str) -> tuple[str, str]:
    """The baseline and candidate quantities the verdict is about, labelled `geomean` when so."""
    suffix = " (geomean)" if verdict.center == CENTER_GEOMEAN else ""
    return (format_value(verdict.baseline_shown, unit) + suffix,
            format_value(verdict.candidate_shown, unit) + suffix)


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
        label = cell.label
        if cell.workload_redefined:
            label = f"{label} ({cell.redefinition_note})"
        if not cell.metrics:
            rows.append(((rank[cell.outcome], cell_index),
                         Row(cell.outcome, label, "-", "", "", "", cell.note or "")))
            continue
        for m in cell.metrics:
            v = m.verdict
            baseline, candidate = format_shown(v, m.metric.unit)
            rows.append((
                (rank[m.outcome], cell_index),
                Row(
                    outcome=m.outcome,
                    cell=label,
                    metric=m.metric.name,
                    baseline=baseline,
                    candidate=candidate,
                    change=f"{format_change(v)} (limit {v.threshold_pct:g}%)",
                    evidence=v.explain(),
                ),
            ))
    return [row for _, row in sorted(rows, key=lambda item: item[0])]


def summary_line(comparison: Comparison) -> str:
    """`2 regressed, 1 failed, ... (of N cells)` with only the non-zero verdicts."""
    counts = comparison.counts()
    parts = [f"{n} {verdict}" for verdict, n in counts.items() if n]
    line = f"{', '.join(parts) or 'nothing to compare'} (of {len(comparison.cells)} cells)"
    if comparison.paired:
        line += f" after {comparison.rounds} paired rounds"
        if not comparison.all_decided:
            line += ("; undecided: more rounds needed to tell (the --undecided policy decides "
                     "whether that fails the gate)")
    elif not comparison.all_decided:
        line += ("; undecided: the repeats are too noisy to tell a change beyond the threshold "
                 "from none (the --undecided policy decides whether that fails the gate)")
    redefined = len(comparison.redefined_cells())
    if redefined:
        line += f"; {redefined} with a redefined workload, compared all the same"
    return line


def thresholds_line(comparison: Comparison) -> str:
    """`threshold 5% (peak_mem 2%)`: the common threshold and the exceptions."""
    values = list(comparison.thresholds_pct.values())
    common = max(set(values), key=values.count) if values else DEFAULT_THRESHOLD_PCT
    others = [f"{k} {v:g}%" for k, v in comparison.thresholds_pct.items() if v != common]
    line = f"threshold {common:g}%"
    if others:
        line += f" ({', '.join(others)})"
    if comparison.paired:
        return (f"{line}; paired rounds: at most {comparison.alpha:g} chance of any false alarm "
                f"over {comparison.family_size} cell x metric tests and every round")
    return f"{line}; noise test at alpha={comparison.alpha:g}"
