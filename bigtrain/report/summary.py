"""The hardware-comparison summary at the top of the report: which machine, by how much, and
whether that is beyond the noise.

Per cell, the throughput of a run against the baseline is decided the way `bigbench compare`
decides it (`bigtrain.compare.stats.decide` on the items_per_s metric, same threshold and alpha): a
Welch t interval of the ratio from the repeats, or a Mann-Whitney test on the steps of a single
repeat (no interval: between-process noise not measured). Over a group of cells (all, a model
family, a precision) the speedup is the geometric mean of the per-cell ratios with a t interval
on their logarithms (`geomean_interval`); a single matched cell keeps its own interval. A group
whose interval spans 1 is "no difference detectable"; one with no interval at all is "one
repeat: noise not measured"; the fastest machine of a family is named only when its interval
lies clear of every other machine's. Pure functions of `ReportData`; the same numbers are
written as tables/summary.csv.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bigtrain.report.data import ReportData
from bigtrain.report.tables import RATIO_MARK, Table

#: Ratios within this factor of 1 are "about the same": below what one run's noise usually moves.
SAME_SPEED_BAND = 1.05

#: The verdict of a group of cells against the baseline.
FASTER = "faster"
SLOWER = "slower"
NO_DIFFERENCE = "no difference detectable"
NOT_MEASURED = "one repeat: noise not measured"
#: What `fastest_per_family` says where no machine is clear of the others.
NO_CLEAR_WINNER = "no clear winner (within the noise)"


def model_family(model: object) -> str:
    """`cnn:tiny` -> `cnn`: the family a model belongs to."""
    return str(model).split(":", 1)[0]


def geometric_sd(values: Sequence[float]) -> float:
    """The geometric standard deviation (a ×/÷ factor; 1 when every ratio is the same)."""
    logs = [math.log(v) for v in values if v > 0 and math.isfinite(v)]
    if len(logs) < 2:
        return float("nan")
    mean = sum(logs) / len(logs)
    return math.exp(math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1)))


@dataclass(frozen=True, kw_only=True)
class RatioInterval:
    """A geometric-mean ratio and its (1 - alpha) interval; low/high None where there is none."""

    ratio: float
    low: float | None
    high: float | None

    @property
    def measured(self) -> bool:
        """Whether the noise was measured (an interval exists)."""
        return self.low is not None and self.high is not None


def geomean_interval(ratios: Sequence[float], *, alpha: float) -> RatioInterval:
    """The geometric mean of positive ratios with the (1 - alpha) Student t interval of it.

    The t interval on the logs treats the cells as a sample of workloads: its width is the spread
    of the per-cell log ratios (which holds each cell's own noise and the real differences between
    cells) over sqrt(n), times the t quantile with n - 1 degrees of freedom -- wide with few
    cells, as it should be. A bootstrap over cells was not used: with the 4-20 cells of a
    typical sweep its percentile interval is too narrow and moves in steps. Fewer than two ratios
    give no interval; identical ratios give the point.
    """
    values = [float(v) for v in ratios]
    if not values:
        raise ValueError("geomean_interval needs at least one ratio")
    if min(values) <= 0 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"ratios must be positive and finite, got {values}")
    logs = [math.log(v) for v in values]
    mean = math.fsum(logs) / len(logs)
    ratio = math.exp(mean)
    if len(logs) < 2:
        return RatioInterval(ratio=ratio, low=None, high=None)
    spread = statistics.stdev(logs)
    if spread == 0:
        return RatioInterval(ratio=ratio, low=ratio, high=ratio)
    from scipy.stats import t as student_t

    half_width = float(student_t.isf(alpha / 2, len(logs) - 1)) * spread / math.sqrt(len(logs))
    return RatioInterval(ratio=ratio, low=math.exp(mean - half_width),
                         high=math.exp(mean + half_width))


def interval_verdict(interval: RatioInterval) -> str:
    """faster / slower when the interval lies above / below 1, no difference detectable when it
    spans 1, one repeat: noise not measured without an interval."""
    if not interval.measured:
        return NOT_MEASURED
    if interval.low > 1:
        return FASTER
    if interval.high < 1:
        return SLOWER
    return NO_DIFFERENCE


@dataclass(frozen=True, kw_only=True)
class CellSpeedup:
    """One matched cell of a run against the baseline, decided as `bigbench compare` decides it."""

    match_key: str
    family: str
    precision: str
    ratio: float  # throughput on the run / on the baseline
    low: float | None  # the compare interval of the ratio (repeats on both sides), else None
    high: float | None
    outcome: str  # compare's: improved (faster), regressed (slower), unchanged or undecided
    one_repeat: bool  # a side had one repeat: its between-process noise was not measured


def decide_cell(baseline: Sequence[object], candidate: Sequence[object], *, match_key: str,
                family: str, precision: str) -> CellSpeedup:
    """A cell's throughput ratio, interval and outcome from the ok records of both sides, by
    compare's `decide` on its items_per_s metric (default threshold and alpha)."""
    from bigtrain.compare.metrics import METRICS_BY_NAME
    from bigtrain.compare.thresholds import DEFAULT_THRESHOLD_PCT
    from bigtrain.compare.stats import DEFAULT_ALPHA, MetricSamples, decide

    metric = METRICS_BY_NAME["items_per_s"]

    def samples(records: Sequence[object]) -> MetricSamples:
        return MetricSamples(per_repeat=tuple(float(metric.value(r)) for r in records),
                             within=tuple(s for r in records for s in metric.steps(r)))

    verdict = decide(samples(baseline), samples(candidate), higher_is_better=True,
                     threshold_pct=DEFAULT_THRESHOLD_PCT, alpha=DEFAULT_ALPHA)
    return CellSpeedup(match_key=match_key, family=family, precision=precision,
                       ratio=verdict.ratio, low=verdict.ratio_low, high=verdict.ratio_high,
                       outcome=verdict.outcome,
                       one_repeat=min(len(baseline), len(candidate)) < 2)


def _ok_records(data: ReportData) -> dict[tuple[str, str], list[object]]:
    """(source, match key) -> the ok records of that cell in that source (one per repeat)."""
    by_id = {(str(run.path.resolve()), rec.cell_id, rec.repeat): rec
             for run in data.runs for rec in run.records}
    ok = data.ok
    out: dict[tuple[str, str], list[object]] = {}
    for source, key, path, cell_id, repeat in zip(
            ok["source"], ok["match_key"], ok["run_path"], ok["cell_id"], ok["repeat"],
            strict=True):
        record = by_id.get((str(Path(path).resolve()), cell_id, int(repeat)))
        if record is not None and record.items_per_s and record.items_per_s > 0:
            out.setdefault((str(source), str(key)), []).append(record)
    return out


def cell_speedups(data: ReportData) -> dict[str, list[CellSpeedup]]:
    """Per run but the baseline: every cell both it and the baseline measured ok, decided."""
    if data.baseline is None or data.ok.empty:
        return {}
    records = _ok_records(data)
    firsts = data.ok.drop_duplicates(["source", "match_key"]).set_index(["source", "match_key"])
    out: dict[str, list[CellSpeedup]] = {}
    for source in data.sources:
        if source == data.baseline:
            continue
        cells = []
        for (here, key), candidate in sorted(records.items()):
            baseline = records.get((str(data.baseline), key))
            if here != source or not baseline:
                continue
            row = firsts.loc[(source, key)]
            cells.append(decide_cell(baseline, candidate, match_key=key,
                                     family=model_family(row["model"]),
                                     precision=str(row["precision"])))
        out[source] = cells
    return out


@dataclass(frozen=True, kw_only=True)
class SpeedupSummary:
    """One run's speedup against the baseline over one group of cells (all, a family, a precision).

    `geomean` with its interval (`ci_low`, `ci_high`, None where the noise was not measured) and
    `verdict`; `per_cell` counts compare's per-cell outcomes.
    """

    source: str
    scope: str
    geomean: float
    ci_low: float | None
    ci_high: float | None
    verdict: str
    geo_sd: float
    low: float
    high: float
    matched: int
    unmatched: int
    per_cell: tuple[tuple[str, int], ...] = ()
    one_repeat_cells: int = 0


def _ok_keys(summary: pd.DataFrame, source: str, scope_column: str | None,
             scope_value: str | None) -> set:
    """The cells (match keys) a source measured ok within a scope."""
    rows = summary[summary["source"].astype(str) == source]
    if scope_column is not None:
        rows = rows[rows[scope_column] == scope_value]
    return set(rows.loc[rows["items_per_s"] > 0, "match_key"])


#: compare's per-cell outcomes in the summary's words, in the order they are counted. `undecided`:
#: the cell's interval reaches past the threshold band (too noisy to call unchanged or changed).
CELL_WORDS = (("improved", "faster"), ("regressed", "slower"), ("unchanged", "unchanged"),
              ("undecided", "undecided"))


def group_summary(cells: Sequence[CellSpeedup], *, source: str, scope: str, unmatched: int,
                  alpha: float) -> SpeedupSummary:
    """The summary of one group of decided cells: geometric mean, interval, verdict, counts."""
    ratios = [c.ratio for c in cells if c.ratio > 0 and math.isfinite(c.ratio)]
    if not ratios:
        interval = RatioInterval(ratio=float("nan"), low=None, high=None)
    elif len(ratios) == 1 and len(cells) == 1:
        # one cell: its own interval from compare (repeats), or none (one repeat)
        interval = RatioInterval(ratio=cells[0].ratio, low=cells[0].low, high=cells[0].high)
    else:
        interval = geomean_interval(ratios, alpha=alpha)
    counts = tuple((word, sum(c.outcome == outcome for c in cells)) for outcome, word in CELL_WORDS)
    return SpeedupSummary(
        source=source, scope=scope, geomean=interval.ratio, ci_low=interval.low,
        ci_high=interval.high,
        verdict=interval_verdict(interval) if ratios else NOT_MEASURED,
        geo_sd=geometric_sd(ratios),
        low=min(ratios) if ratios else float("nan"),
        high=max(ratios) if ratios else float("nan"),
        matched=len(ratios), unmatched=unmatched, per_cell=counts,
        one_repeat_cells=sum(c.one_repeat for c in cells),
    )


def speedup_summaries(data: ReportData) -> list[SpeedupSummary]:
    """Every run but the baseline: all cells, then each model family, then each precision."""
    from bigtrain.compare.stats import DEFAULT_ALPHA

    if data.baseline is None or data.summary.empty:
        return []
    summary = data.summary.assign(family=data.summary["model"].map(model_family),
                                  precision=data.summary["precision"].astype(str))
    decided = cell_speedups(data)
    scopes: list[tuple[str, str | None, str | None]] = [("all cells", None, None)]
    scopes += [(f"family {f}", "family", f) for f in sorted(summary["family"].unique())]
    scopes += [(f"precision {p}", "precision", p) for p in sorted(summary["precision"].unique())]
    out = []
    for source in data.sources:
        if source == data.baseline:
            continue
        for scope, column, value in scopes:
            here = _ok_keys(summary, source, column, value)
            there = _ok_keys(summary, data.baseline, column, value)
            if not here and not there:
                continue
            cells = [c for c in decided.get(source, [])
                     if column is None or getattr(c, column) == value]
            out.append(group_summary(cells, source=source, scope=scope,
                                     unmatched=len(here ^ there), alpha=DEFAULT_ALPHA))
    return out


def interval_level_pct() -> str:
    """`99%`: the level of every interval in the summary (compare's alpha)."""
    from bigtrain.compare.stats import DEFAULT_ALPHA

    return f"{(1 - DEFAULT_ALPHA) * 100:g}%"


def summary_table(data: ReportData) -> Table | None:
    """tables/summary.csv: the speedup summaries as rows; None without a baseline to compare with."""
    rows = speedup_summaries(data)
    if not rows:
        return None
    level = interval_level_pct()
    frame = pd.DataFrame([{
        "machine": r.source,
        "cells": r.scope,
        f"speedup {RATIO_MARK}": r.geomean,
        f"{level} interval low {RATIO_MARK}": math.nan if r.ci_low is None else r.ci_low,
        f"{level} interval high {RATIO_MARK}": math.nan if r.ci_high is None else r.ci_high,
        "verdict": r.verdict,
        f"spread (geometric SD) {RATIO_MARK}": r.geo_sd,
        f"slowest cell {RATIO_MARK}": r.low,
        f"fastest cell {RATIO_MARK}": r.high,
        "matched cells": r.matched,
        "unmatched cells": r.unmatched,
        **{f"cells {word}": n for word, n in r.per_cell},
    } for r in rows])
    return Table(
        "summary",
        f"Summary: speedup against {data.baseline}",
        f"Geometric mean of the throughput ratio to the baseline {data.baseline} over the cells "
        f"both runs measured, with its {level} t interval over the cells (a single cell: "
        "compare's interval from its repeats, none with one repeat) and the verdict it gives: "
        "faster or slower only where the interval excludes 1. Per cell, the outcome as "
        "`bigbench compare` decides it; unmatched cells were measured ok on one side only and "
        "are left out of the mean.",
        frame,
        in_markdown=False,
    )


def fastest_per_family(data: ReportData) -> dict[str, str]:
    """The fastest machine per model family, or NO_CLEAR_WINNER.

    A machine is named only when its interval of the speedup lies wholly above every other
    machine's (the baseline's is the point 1); a family where any interval is missing or two
    overlap has no clear winner. Only families measured on the baseline and at least one other
    run are judged.
    """
    by_family: dict[str, list[tuple[str, float, float, float]]] = {}
    for row in speedup_summaries(data):
        if not row.scope.startswith("family ") or row.matched == 0:
            continue
        family = row.scope.removeprefix("family ")
        entries = by_family.setdefault(family, [(str(data.baseline), 1.0, 1.0, 1.0)])
        low = 0.0 if row.ci_low is None else row.ci_low
        high = math.inf if row.ci_high is None else row.ci_high
        entries.append((row.source, row.geomean, low, high))
    out = {}
    for family, entries in sorted(by_family.items()):
        best = max(entries, key=lambda e: e[1])
        clear = all(best[2] > other[3] for other in entries if other is not best)
        out[family] = best[0] if clear else NO_CLEAR_WINNER
    return out


def format_ratio(value: float) -> str:
    """1.234 -> `1.23×`, 123.4 -> `123×`, 0.0123 -> `0.012×`."""
    if not math.isfinite(value):
        return "—"
    if value >= 100:
        return f"{value:.0f}{RATIO_MARK}"
    if value >= 0.1:
        return f"{value:.2f}{RATIO_MARK}"
    return f"{value:.2g}{RATIO_MARK}"


def format_interval(low: float | None, high: float | None) -> str:
    """`0.05× to 4.6×`, or `—` without an interval."""
    if low is None or high is None:
        return "—"
    return f"{format_ratio(low)} to {format_ratio(high)}"


def machine_caveats(data: ReportData, source: str) -> list[str]:
    """Caveats about how one run was measured, said in its verdict line: the records `source`
    (and the baseline it is compared with) timed while the host was busy (`host_load.busy`)."""
    names = [source] if source == data.baseline or data.baseline is None else [source,
                                                                                data.baseline]
    return [f"{note}: those numbers measure the machine as much as the code."
            for name in names if (note := busy_note_of(data, name))]


def busy_note_of(data: ReportData, source: str) -> str | None:
    """compare's busy-machine sentence over one source's records, or None."""
    from bigtrain.compare.busy import busy_note
    from bigtrain.report.data import source_names

    names = source_names(data.runs)
    records = [r for run in data.runs if names[run.path.resolve()] == source for r in run.records]
    return busy_note(records, source)


def verdict_lines(data: ReportData) -> list[str]:
    """One plain sentence per machine saying how it compares with the baseline, and how sure."""
    if data.baseline is None:
        return []
    fastest = fastest_per_family(data)
    level = interval_level_pct()
    lines = []
    for row in speedup_summaries(data):
        if row.scope != "all cells":
            continue
        if row.matched == 0:
            lines.append(f"{row.source}: no cell in common with the baseline {data.baseline}; "
                         "nothing to compare.")
            continue
        cells = f"{row.matched} matched cell{'s' if row.matched != 1 else ''}"
        if row.unmatched:
            cells += f", {row.unmatched} unmatched"
        if row.verdict == FASTER:
            how = (f"{format_ratio(row.geomean)} faster than the baseline {data.baseline} "
                   f"({level} interval {format_interval(row.ci_low, row.ci_high)}, {cells})")
        elif row.verdict == SLOWER:
            how = (f"{format_ratio(1 / row.geomean)} slower than the baseline {data.baseline} "
                   f"(speedup {format_ratio(row.geomean)}, {level} interval "
                   f"{format_interval(row.ci_low, row.ci_high)}, {cells})")
        elif row.verdict == NO_DIFFERENCE:
            how = (f"no difference detectable from the baseline {data.baseline} (speedup "
                   f"{format_ratio(row.geomean)}, {level} interval "
                   f"{format_interval(row.ci_low, row.ci_high)} spans 1×, {cells})")
        else:
            how = (f"one repeat: noise not measured against the baseline {data.baseline} "
                   f"(speedup {format_ratio(row.geomean)} on {cells}; use --repeats 2 or more)")
        per_cell = ", ".join(f"{n} {word}" for word, n in row.per_cell if n)
        tail = f"; per cell as compare decides: {per_cell}" if per_cell else ""
        if row.one_repeat_cells and row.matched > 1:
            tail += (f"; {row.one_repeat_cells} of them with one repeat a side "
                     "(between-process noise not measured)")
        wins = [f for f, s in fastest.items() if s == row.source]
        if wins:
            tail += f"; fastest on {', '.join(wins)}"
        caveats = "".join(f" {c}" for c in machine_caveats(data, row.source))
        lines.append(f"{row.source}: {how}{tail}.{caveats}")
    return lines


@dataclass(frozen=True, kw_only=True)
class Overview:
    """What the top of the report says: verdicts, fastest machines, comparability, the table."""

    verdicts: tuple[str, ...]
    fastest: tuple[tuple[str, str], ...]
    warning: str | None
    differences: tuple[str, ...]
    note: str | None
    table: Table | None
    #: Time-to-target lines (bigtrain.report.convergence); empty for step-time-only reports.
    convergence: tuple[str, ...] = ()


def overview(data: ReportData, tables: Sequence[Table]) -> Overview:
    """The summary block of index.html and report.md, from the data and its `summary` table."""
    from bigtrain.report.comparability import differences, warning_line
    from bigtrain.report.convergence import headline_lines
    from bigtrain.report.leaderboard import headline_lines as leaderboard_lines

    found = differences(data)
    note = None
    if data.baseline is None:
        ok = data.summary
        families = sorted({model_family(m) for m in ok["model"]}) if not ok.empty else []
        source = data.sources[0] if data.sources else "no run"
        note = (f"One run ({source}): {len(ok)} cells measured ok"
                + (f" ({', '.join(families)})" if families else "")
                + "; nothing to compare it with. Give a second run "
                "(bigbench report A B --baseline A) for speedups.")
    verdicts = verdict_lines(data) if data.baseline is not None else one_run_lines(data)
    if data.baseline is None:  # no verdict line to carry it: say it beside the one-run lines
        verdicts += machine_caveats(data, data.sources[0]) if data.sources else []
    return Overview(
        verdicts=tuple(verdicts),
        fastest=tuple(fastest_per_family(data).items()),
        warning=warning_line(found),
        differences=tuple(d.sentence() for d in found),
        note=note,
        table=next((t for t in tables if t.name == "summary"), None),
        convergence=(*leaderboard_lines(data), *headline_lines(data)),
    )


def one_run_lines(data: ReportData) -> list[str]:
    """For a report of one run: per model family, how many cells and the throughput they span."""
    from bigtrain.report.figures import short_number

    ok = data.summary
    if ok.empty:
        return []
    ok = ok.assign(family=ok["model"].map(model_family))
    lines = []
    for family, rows in ok.groupby("family", sort=True):
        rates = rows["items_per_s"].dropna()
        if rates.empty:
            continue
        units = "/".join(sorted(set(rows["item_unit"].dropna().astype(str)))) or "items"
        lines.append(f"{family}: {len(rows)} cells, {short_number(rates.min())} to "
                     f"{short_number(rates.max())} {units}/s (median {short_number(rates.median())}).")
    return lines
