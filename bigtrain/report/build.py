"""Putting the report together: load, build tables and figures, write every output."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bigtrain.report.data import load_report_data
from bigtrain.report.figures import all_figures
from bigtrain.report.render import (
    build_sections,
    write_csvs,
    write_figures,
    write_html,
    write_markdown,
    write_parquet,
)
from bigtrain.report.tables import all_tables


def write_report(
    run_dirs: Sequence[Path], out_dir: Path, baseline: Path | None = None
) -> Path:
    """Write the report of `run_dirs` into `out_dir` and return the path of its index.html.

    Writes index.html (self-contained), report.md, tables/*.csv, figures/*.png and frame.parquet.
    `baseline` (a run folder, added to the runs if missing) is what speedups are measured against;
    without it, the first run is the baseline when there are several. Raises BadInput, naming the
    file and line, for a run folder that cannot be read.
    """
    data = load_report_data(run_dirs, baseline)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = all_tables(data)
    figures = all_figures(data)
    write_csvs(out_dir / "tables", tables)
    write_figures(out_dir / "figures", figures)
    write_parquet(out_dir / "frame.parquet", data.frame)
    write_markdown(out_dir / "report.md", data, tables, figures)
    index = out_dir / "index.html"
    write_html(index, data, build_sections(tables, figures))
    return index
