"""`bigbench report`: tables and figures from one or more runs, as HTML, Markdown, CSV, Parquet.

The analysing side: pandas, seaborn/matplotlib (Agg), jinja2; never torch or pynvml.
"""

from __future__ import annotations

from bigtrain.report.build import write_report

__all__ = ["write_report"]
