"""The hardware-comparison summary at the top of the report: which machine, by how much.

Per run against the baseline: the geometric-mean speedup over the cells both measured, with its
spread (the geometric standard deviation and the range of the per-cell ratios) and how many cells
matched and did not, over all cells, per model family and per precision; the fastest machine per
family; and a one-line verdict per machine. Pure functions of `ReportData`; the same numbers are
written as tables/summary.csv.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from bigtrain.report.data import ReportData
from bigtrain.report.tables import RATIO_MARK, Table, geometric_mean, speedup_frame

#: Ratios within this factor of 1 are "about the same": below what one run's noise usually moves.
SAME_SPEED_BAND = 1.05


@dataclass(frozen=True, kw_only=True)
class SpeedupSummary:
    """One run's speedup against the baseline over one group of cells (all, a family, a precision)."""

    source: str
    scope: str
    geomean: float
    geo_sd: float
    low: float
    high: float
    matched: int
    unmatched: int


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


def _ok_keys(summary: pd.DataFrame, source: str, scope_column: str | None,
             scope_value: str | None) -> set:
    """The cells (match keys) a source measured ok within a scope."""
    rows = summary[summary["source"].astype(str) == source]
    if scope_column is not None:
        rows = rows[rows[scope_column] == scope_value]
    return set(rows.loc[rows["items_per_s"] > 0, "match_key"])


def speedup_summaries(data: ReportData) -> list[SpeedupSummary]:
    """Every run but the baseline: all cells, then each model family, then each precision."""
    merged = speedup_frame(data)
    if data.baseline is None or data.summary.empty:
        return []
    summary = data.summary.assign(family=data.summary["model"].map(model_family),
                                  precision=data.summary["precision"].astype(str))
    if not merged.empty:
        merged = merged.assign(family=merged["model"].map(model_family),
                               precision=merged["precision"].astype(str))
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
            ratios: list[float] = []
            if not merged.empty:
                rows = merged[merged["source"] == source]
                if column is not None:
                    rows = rows[rows[column] == value]
                ratios = rows["speedup"].tolist()
            out.append(SpeedupSummary(
                source=source, scope=scope, geomean=geometric_mean(ratios),
                geo_sd=geometric_sd(ratios),
                low=min(ratios) if ratios else float("nan"),
                high=max(ratios) if ratios else float("nan"),
                matched=len(ratios), unmatched=len(here ^ there),
            ))
    return out


def summary_table(data: ReportData) -> Table | None:
    """tables/summary.csv: the speedup summaries as rows; None without a baseline to compare with."""
    rows = speedup_summaries(data)
    if not rows:
        return None
    frame = pd.DataFrame([{
        "machine": r.source,
        "cells": r.scope,
        f"speedup {RATIO_MARK}": r.geomean,
        f"spread (geometric SD) {RATIO_MARK}": r.geo_sd,
        f"slowest cell {RATIO_MARK}": r.low,
        f"fastest cell {RATIO_MARK}": r.high,
        "matched cells": r.matched,
        "unmatched cells": r.unmatched,
    } for r in rows])
    return Table(
        "summary",
        f"Summary: speedup against {data.baseline}",
        f"Geometric mean of the throughput ratio to the baseline {data.baseline} over the cells "
        "both runs measured, with the geometric SD and the slowest and fastest cell; unmatched "
        "cells were measured ok on one side only and are left out of the mean.",
        frame,
        in_markdown=False,
    )


def fastest_per_family(data: ReportData) -> dict[str, str]:
    """The machine with the highest geometric-mean speedup per model family (baseline = 1×).

    Only families measured on the baseline and at least one other run are judged.
    """
    best: dict[str, tuple[float, str]] = {}
    for row in speedup_summaries(data):
        if not row.scope.startswith("family ") or row.matched == 0:
            continue
        family = row.scope.removeprefix("family ")
        current = best.get(family, (1.0, str(data.baseline)))
        if row.geomean > current[0]:
            current = (row.geomean, row.source)
        best[family] = current
    return {family: source for family, (_, source) in sorted(best.items())}


def format_ratio(value: float) -> str:
    """1.234 -> `1.23×`, 123.4 -> `123×`, 0.0123 -> `0.012×`."""
    if not math.isfinite(value):
        return "—"
    if value >= 100:
        return f"{value:.0f}{RATIO_MARK}"
    if value >= 0.1:
        return f"{value:.2f}{RATIO_MARK}"
    return f"{value:.2g}{RATIO_MARK}"


def verdict_lines(data: ReportData) -> list[str]:
    """One plain sentence per machine saying how it compares with the baseline."""
    if data.baseline is None:
        return []
    fastest = fastest_per_family(data)
    lines = []
    for row in speedup_summaries(data):
        if row.scope != "all cells":
            continue
        if row.matched == 0:
            lines.append(f"{row.source}: no cell in common with the baseline {data.baseline}; "
                         "nothing to compare.")
            continue
        if row.geomean >= SAME_SPEED_BAND:
            how = f"{format_ratio(row.geomean)} faster than"
        elif row.geomean <= 1 / SAME_SPEED_BAND:
            how = f"{format_ratio(1 / row.geomean)} slower than"
        else:
            how = f"about as fast as ({format_ratio(row.geomean)})"
        spread = (f"per cell {format_ratio(row.low)} to {format_ratio(row.high)}"
                  if row.matched > 1 else "one cell")
        wins = [f for f, s in fastest.items() if s == row.source]
        tail = f"; fastest on {', '.join(wins)}" if wins else ""
        unmatched = f", {row.unmatched} unmatched" if row.unmatched else ""
        lines.append(f"{row.source}: {how} the baseline {data.baseline} over {row.matched} "
                     f"matched cells{unmatched} ({spread}){tail}.")
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
    return Overview(
        verdicts=tuple(verdicts),
        fastest=tuple(fastest_per_family(data).items()),
        warning=warning_line(found),
        differences=tuple(d.sentence() for d in found),
        note=note,
        table=next((t for t in tables if t.name == "summary"), None),
        convergence=tuple(headline_lines(data)),
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
