"""Compare two runs (or two sets of records) cell by cell and metric by metric: `bigbench compare`.

Rooms: `metrics` (what is compared, in which direction), `thresholds` (`--threshold`), `gate`
(the decision; on records in memory or on run folders), `result` (verdicts and decided cells),
`paired` (the gate on paired rounds, for `bigbench ab`), `rows`, `terminal`, `markdown`, `json_report` (the renderings). Statistics live in
`bigtrain.compare.stats`. The public names are re-exported here.

Analysing side of the wall: never imports torch, pynvml or pandas.
"""

from __future__ import annotations

from bigtrain.compare.gate import (
    compare_cell,
    compare_records,
    compare_run_dirs,
    compare_runs,
    group_repeats,
    hardware_differences,
    workload_version,
)
from bigtrain.compare.paired import CompareResult, PairedRound, all_decided, compare_paired
from bigtrain.compare.json_report import JSON_FORMAT_VERSION, to_json
from bigtrain.compare.markdown import render_markdown
from bigtrain.compare.metrics import (
    METRIC_NAMES,
    METRICS,
    METRICS_BY_NAME,
    NOISY,
    STEADY,
    Metric,
    metric_names_text,
)
from bigtrain.compare.result import (
    FAILED,
    GATING_VERDICTS,
    MISSING,
    NEW,
    REDEFINED,
    VERDICT_ORDER,
    CellComparison,
    Comparison,
    MetricComparison,
    cell_label,
)
from bigtrain.compare.rows import (
    Row,
    format_change,
    format_value,
    summary_line,
    table_rows,
    thresholds_line,
)
from bigtrain.compare.terminal import render_terminal
from bigtrain.compare.thresholds import DEFAULT_THRESHOLD_PCT, parse_thresholds
from bigtrain.compare.stats import (
    DEFAULT_ALPHA,
    IMPROVED,
    REGRESSED,
    UNCHANGED,
    UNDECIDED,
    Verdict,
    decide,
)

__all__ = [
    "CompareResult", "PairedRound", "UNDECIDED", "all_decided", "compare_paired",
    "DEFAULT_ALPHA", "DEFAULT_THRESHOLD_PCT", "FAILED", "GATING_VERDICTS", "IMPROVED",
    "JSON_FORMAT_VERSION", "METRICS", "METRICS_BY_NAME", "METRIC_NAMES", "MISSING", "NEW", "NOISY",
    "REDEFINED", "REGRESSED", "STEADY", "UNCHANGED", "VERDICT_ORDER", "CellComparison",
    "Comparison", "Metric", "MetricComparison", "Row", "Verdict", "cell_label", "compare_cell",
    "compare_records", "compare_run_dirs", "compare_runs", "decide", "format_change",
    "format_value", "group_repeats", "hardware_differences", "metric_names_text",
    "parse_thresholds", "render_markdown", "render_terminal", "summary_line", "table_rows",
    "thresholds_line", "to_json", "workload_version",
]
