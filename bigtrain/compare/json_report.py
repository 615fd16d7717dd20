"""The comparison as a JSON-ready dict, for machines (`bigbench compare --json`)."""

from __future__ import annotations

import math
from typing import Any

from bigtrain.compare.result import Comparison
from bigtrain.results.schema import AXES

JSON_FORMAT_VERSION = 1


def to_json(comparison: Comparison) -> dict[str, Any]:
    """The comparison as a JSON-ready dict (paths are null for records compared in memory)."""
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
            "workload_version": {"baseline": cell.baseline_workload_version,
                                 "candidate": cell.candidate_workload_version},
            "workload_redefined": cell.workload_redefined,
            "rounds": cell.rounds,
            "decided": cell.decided,
            "metrics": [
                {
                    "metric": m.metric.name,
                    "unit": m.metric.unit,
                    "higher_is_better": m.metric.higher_is_better,
                    "verdict": m.outcome,
                    "baseline_median": m.verdict.baseline_median,
                    "candidate_median": m.verdict.candidate_median,
                    # the quantities the change is about (geometric means or medians)
                    "center": m.verdict.center,
                    "baseline_value": _finite_or_none(m.verdict.baseline_shown),
                    "candidate_value": _finite_or_none(m.verdict.candidate_shown),
                    "ratio": _finite_or_none(m.verdict.ratio),
                    "change_pct": _finite_or_none(m.verdict.change_pct),
                    "threshold_pct": m.verdict.threshold_pct,
                    "method": m.verdict.method,
                    "p_value": m.verdict.p_value,
                    # an edge is null where it is unbounded (too few repeats or rounds)
                    "ratio_interval": (
                        [_finite_or_none(m.verdict.ratio_low),
                         _finite_or_none(m.verdict.ratio_high)]
                        if m.verdict.ratio_low is not None else None
                    ),
                    "confidence": 1 - m.verdict.alpha,
                    "baseline_n": m.verdict.baseline_n,
                    "candidate_n": m.verdict.candidate_n,
                    "rounds": m.verdict.rounds,
                    "mde_pct": (_finite_or_none(m.verdict.mde_pct)
                                if m.verdict.mde_pct is not None else None),
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
        "missing_fails": comparison.missing_fails,
        "paired": ({"rounds": comparison.rounds, "max_rounds": comparison.max_rounds,
                    "family_size": comparison.family_size,
                    "all_decided": comparison.all_decided}
                   if comparison.paired else None),
        "counts": comparison.counts(),
        "redefined_cells": len(comparison.redefined_cells()),
        "hardware_differences": list(comparison.hardware_differences),
        "warnings": list(comparison.warnings),
        "cells": cells,
    }


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
