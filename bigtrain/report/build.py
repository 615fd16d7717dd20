"""Putting the report together: load, build tables and figures, write every output."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bigtrain.report.convergence import convergence_tables
from bigtrain.report.convergence_figures import convergence_figures
from bigtrain.report.data import ReportData, load_report_data
from bigtrain.report.figures import all_figures
from bigtrain.report.profiles import SECTION_ANCHOR as PROFILE_ANCHOR
from bigtrain.report.profiles import profile_view
from bigtrain.report.fit import fit_table, tradeoff_figures
from bigtrain.report.leaderboard import leaderboard_tables
from bigtrain.report.frameworks import frameworks_table
from bigtrain.report.leaderboard_figures import leaderboard_figures
from bigtrain.report.render import (
    build_sections,
    write_csvs,
    write_figures,
    write_html,
    write_markdown,
    write_parquet,
)
from bigtrain.report.scaling import scaling_table
from bigtrain.report.summary import overview as build_overview
from bigtrain.report.summary import summary_table
from bigtrain.report.tables import (
    Table,
    batch_norm_table,
    efficiency_table,
    failures_table,
    memory_table,
    phases_table,
    precision_table,
    price_table,
    runs_table,
    spec_table,
    speedup_table,
    step_time_table,
    telemetry_missing_table,
    telemetry_table,
    throughput_table,
)


def all_tables(data: ReportData) -> list[Table]:
    """Every table of the report, in reading order, without the ones the runs have no data for."""
    builders = (
        summary_table, runs_table, spec_table, throughput_table, speedup_table, batch_norm_table,
        precision_table, memory_table, fit_table, efficiency_table, price_table, scaling_table,
        frameworks_table, phases_table,
        step_time_table, telemetry_table, telemetry_missing_table, failures_table,
    )
    return [t for t in (b(data) for b in builders) if t is not None]
from bigtrain.results.output_paths import checked_inside, checked_output

#: How the report's folder is named in messages.
OUT_FLAG = "report folder (-o)"


def write_report(
    run_dirs: Sequence[Path], out_dir: Path, baseline: Path | None = None,
    prices_usd_per_h: Mapping[str, float] | None = None,
    on_why: Callable[[str], None] | None = None,
) -> Path:
    """Write the report of `run_dirs` into `out_dir` and return the path of its index.html.

    Writes index.html (self-contained), report.md, tables/*.csv, figures/*.png and frame.parquet.
    `baseline` (a run folder, added to the runs if missing) is what speedups are measured against;
    without it, the first run is the baseline when there are several. `prices_usd_per_h` (machine
    name -> USD per hour, see `bigtrain.report.prices`) adds price-performance. Runs with profiles
    add the "Where the time goes" section; `on_why` is called with each of its "why" lines (the
    terminal shows them). Raises BadInput,
    naming the file and line, for a run folder that cannot be read, or a price matching no machine.
    """
    data = load_report_data(run_dirs, baseline, prices_usd_per_h)
    given = Path(out_dir)
    # Every file goes through the output guard: never onto a run folder's own files, never out
    # of the report folder through a symlink planted in it (bigtrain.results.output_paths).
    out_dir = checked_output(given, what=OUT_FLAG)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Time-to-target tables and figures come first after the runs: for a converge run they are
    # the answer; a step-time-only report has none, and renders as before.
    # A tuned converge run's leaderboard leads them (it is the tuned answer; the trials follow it).
    tables = after_runs(all_tables(data), [*leaderboard_tables(data), *convergence_tables(data)])
    figures = [*leaderboard_figures(data), *convergence_figures(data), *all_figures(data),
               *tradeoff_figures(data)]
    links: tuple[tuple[str, str], ...] = ()
    view = profile_view(data, out_dir)
    if view is not None:
        tables, figures, links = [*tables, *view.tables], [*figures, *view.figures], view.links
        for line in view.why if on_why is not None else ():
            on_why(line)
    def inside(relative: str) -> Path:
        return checked_inside(out_dir, relative, what=OUT_FLAG)

    write_csvs(inside("tables"), tables)
    write_figures(inside("figures"), figures)
    write_parquet(inside("frame.parquet"), data.frame)
    overview = build_overview(data, tables)
    write_markdown(inside("report.md"), data, tables, figures, overview, links)
    sections = [dataclasses.replace(s, links=links) if s.anchor == PROFILE_ANCHOR else s
                for s in build_sections(tables, figures)]
    write_html(inside("index.html"), data, sections, overview)
    return given / "index.html"


def after_runs(tables: Sequence[Table], inserted: Sequence[Table]) -> list[Table]:
    """`tables` with `inserted` placed after the runs and spec tables (the report's header)."""
    tables = list(tables)
    at = max((i + 1 for i, t in enumerate(tables) if t.name in ("runs", "spec")), default=0)
    return [*tables[:at], *inserted, *tables[at:]]
