"""Writing the report: index.html (self-contained), report.md, tables/*.csv, figures/*.png, and
the whole frame as Parquet.

The HTML embeds its styles and every figure (base64 PNG) so the one file opens offline, from a USB
stick or a CI artifact, with nothing fetched from anywhere.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from bigtrain import __version__
from bigtrain.common.markdown_escape import escape_markdown
from bigtrain.report.data import ReportData
from bigtrain.report.figures import Figure
from bigtrain.report.summary import Overview
from bigtrain.report.tables import RATIO_MARK, Table
from bigtrain.results.output_paths import checked_inside, write_output

#: report.md is pasted into PR comments: the summary stays in the open within this many lines,
#: everything after it is folded.
MARKDOWN_OPEN_LINES = 60
#: A comparability list longer than this folds away in report.md.
MARKDOWN_FOLD_DIFFERENCES = 8


@dataclass(frozen=True)
class Section:
    """A heading of the report and the tables and figures under it."""

    anchor: str
    title: str
    tables: tuple[Table, ...] = ()
    figures: tuple[Figure, ...] = ()
    empty_note: str = ""
    #: (text, relative href) links to files beside the report (traces, memory timelines)
    links: tuple[tuple[str, str], ...] = ()


#: (anchor, heading, table names, figure name prefixes, note shown when the section is empty)
SECTION_PLAN = (
    ("runs", "Runs", ("runs", "spec"), (), ""),
    ("throughput", "Throughput", ("throughput",), ("throughput-",),
     "No cell finished ok, so there is no throughput to show; see the cells that did not finish."),
    ("speedup", "Speedup against the baseline", ("speedup",), ("speedup-",),
     "Speedup needs two or more runs with cells in common."),
    ("effects", "Batch norm and precision", ("batch_norm", "precision"), (),
     "These runs do not pair batch norm on/off or reduced precision with fp32."),
    ("memory", "Memory", ("memory", "fit"), ("memory-",), "No memory figures were recorded."),
    ("efficiency", "Energy and efficiency", ("efficiency", "price"),
     ("energy-efficiency-", "model-flops-utilisation-", "share-of-measured-peak-"),
     "No power, energy or FLOP figures were recorded (no NVML on these machines)."),
    # None: the section is left out when empty (only runs with data-parallel cells have it).
    ("scaling", "Data-parallel scaling", ("scaling",), ("scaling-",), None),
    ("phases", "Where the step goes", ("phases",), ("phases-", "optimizer-floor"),
     "No phase timings were recorded."),
    # Only when the runs hold profiles (bigtrain/report/profiles.py); links added by the builder.
    ("profiles", "Where the time goes",
     ("profile_categories", "profile_top_ops", "profile_launches", "profile_why",
      "profile_roofline", "profile_hta", "profile_invalid"), ("profile-",), None),
    ("noise", "Step-time distributions", ("step_time",), ("step-times-",),
     "No step times were recorded."),
    ("telemetry", "Hardware telemetry", ("telemetry", "telemetry_missing"), ("timelines",),
     "No hardware telemetry was recorded."),
    ("not-ok", "Cells that did not finish ok", ("not_ok",), (), ""),
)


#: The time-to-target section, placed after the runs only when the report has converge results.
CONVERGE_SECTION = ("converge", "Time to target", ("converge", "converge_effects", "not_reached"),
                    ("converge-",), "")

#: The tuned leaderboard (bigtrain/report/leaderboard.py), first after the runs when there is one.
LEADERBOARD_SECTION = ("leaderboard", "Tuned leaderboard", ("leaderboard", "tuning_trials"),
                       ("leaderboard-",), "")


def build_sections(tables: Sequence[Table], figures: Sequence[Figure]) -> list[Section]:
    """Group the tables and figures under their headings, in reading order."""
    by_name = {t.name: t for t in tables}
    sections = []
    plan = list(SECTION_PLAN)
    if "converge" in by_name:
        plan.insert(1, CONVERGE_SECTION)
    if "leaderboard" in by_name:  # a tuned run's answer: before the time-to-target detail
        plan.insert(1, LEADERBOARD_SECTION)
    for anchor, title, table_names, prefixes, note in plan:
        chosen = tuple(by_name[n] for n in table_names if n in by_name)
        figs = tuple(f for f in figures if any(f.name.startswith(p) for p in prefixes))
        if note is None and not chosen and not figs:
            continue
        sections.append(Section(anchor, title, chosen, figs, note))
    return sections


# -- formatting ----------------------------------------------------------------------------------
def format_value(column: str, value: object) -> str:
    """How a number reads in a table: ratios as 1.23×, big numbers with separators, 3 digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, float):
        if column.endswith(RATIO_MARK):
            # two decimals, but never round a real ratio down to 0.00x
            return f"{value:.2f}{RATIO_MARK}" if abs(value) >= 0.1 else f"{value:.2g}{RATIO_MARK}"
        if value.is_integer() and abs(value) < 1e15 and "(" not in column:
            return f"{int(value)}"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.1f}"
        return f"{value:.3g}"
    if pd.isna(value) if not isinstance(value, (list, tuple, dict)) else False:
        return "—"
    return str(value)


def display_rows(table: Table) -> list[list[str]]:
    """The table's cells as formatted strings."""
    columns = [str(c) for c in table.frame.columns]
    return [
        [format_value(col, _native(v)) for col, v in zip(columns, row, strict=True)]
        for row in table.frame.itertuples(index=False, name=None)
    ]


def _native(value: object) -> object:
    """numpy scalars to Python ones, so formatting sees int and float."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (list, tuple)) else value


def numeric_columns(table: Table) -> list[bool]:
    """Which columns hold numbers (right-aligned)."""
    return [pd.api.types.is_numeric_dtype(table.frame[c]) or str(c).endswith(RATIO_MARK)
            for c in table.frame.columns]


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table; every cell escaped (`escape_markdown`)."""
    header = [escape_markdown(c) for c in table.frame.columns]
    align = ["---:" if num else "---" for num in numeric_columns(table)]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(escape_markdown(v) for v in row) + " |"
              for row in display_rows(table)]
    return "\n".join(lines)


def _folded(summary: str, body: str) -> str:
    return f"<details><summary>{escape_markdown(summary)}</summary>\n\n{body}\n\n</details>"


def markdown_summary(data: ReportData, overview: Overview) -> list[str]:
    """The open part of report.md: verdicts, the comparability warning, the speedup summary."""
    md = escape_markdown
    out = ["## Summary", ""]
    if overview.warning:
        out += [f"> :warning: {md(overview.warning)}", ""]
    if overview.note:
        out += [md(overview.note), ""]
    out += [f"- {md(line)}" for line in overview.verdicts]
    if overview.fastest:
        out.append("- Fastest per model family: "
                   + "; ".join(f"{md(family)}: {md(source)}" for family, source in overview.fastest))
    out += [f"- {md(line)}" for line in overview.convergence]
    if overview.verdicts or overview.fastest or overview.convergence:
        out.append("")
    table = overview.table
    if table is not None:
        body = markdown_table(table)
        out += [f"_{md(table.caption)}_", ""]
        # Budget: the lines so far, the table, and the comparability lines that follow it.
        after = 2 + (len(overview.differences) if len(overview.differences)
                     <= MARKDOWN_FOLD_DIFFERENCES else 1)
        if len(out) + len(table.frame) + 2 + after > MARKDOWN_OPEN_LINES - 6:
            body = _folded(f"speedup per machine, family and precision ({len(table.frame)} rows)",
                           body)
        out += [body, ""]
    if overview.differences:
        out += ["### Comparability", ""]
        items = "\n".join(f"- {md(d)}" for d in overview.differences)
        if len(overview.differences) > MARKDOWN_FOLD_DIFFERENCES:
            items = _folded(f"{len(overview.differences)} settings differ between the runs", items)
        out += [items, ""]
    elif len(data.runs) > 1:
        out += ["Comparability: the runs share every measure and software setting recorded.", ""]
    return out


# -- writers -------------------------------------------------------------------------------------
def write_markdown(path: Path, data: ReportData, tables: Sequence[Table],
                   figures: Sequence[Figure], overview: Overview,
                   links: Sequence[tuple[str, str]] = ()) -> None:
    """report.md: the summary in the open, then every table folded, and links to the figures.

    Every piece of data (machine and run names, models, reasons) goes through `escape_markdown`:
    the file is pasted into PR comments, and a pull request's own code writes its candidate side.
    """
    md = escape_markdown
    counts = _status_counts(data)
    out = [
        f"# bigbench report: {md(', '.join(data.sources) or 'no runs')}",
        "",
        f"{len(data.frame)} records from {len(data.runs)} run(s); {md(counts)}."
        + (f" Baseline: **{md(data.baseline)}**." if data.baseline else ""),
        "",
        *markdown_summary(data, overview),
    ]
    for table in tables:
        if not table.in_markdown:
            continue
        out += [f"## {md(table.title)}", "", f"_{md(table.caption)}_", ""]
        if table.frame.empty:
            out += ["None.", ""]
            continue
        out += [_folded(f"{len(table.frame)} rows", markdown_table(table)), ""]
        out += [f"- {md(note)}" for note in table.notes]
        if table.notes:
            out.append("")
    if figures:
        out += ["## Figures", ""]
        out += [f"- [{md(f.title)}](figures/{f.name}.png): {md(f.caption)}" for f in figures]
        out.append("")
    if links:
        # hrefs are percent-encoded relative paths (bigtrain/report/profiles.py): no `)` or space
        out += ["## Traces and memory timelines", ""]
        out += [f"- [{md(text)}](<{href}>)" for text, href in links]
        out.append("")
    write_output(path, "\n".join(out), what="report")


def _status_counts(data: ReportData) -> str:
    if data.frame.empty:
        return "no records"
    counts = data.frame["status"].value_counts()
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def write_csvs(folder: Path, tables: Sequence[Table]) -> None:
    """tables/<name>.csv with the unformatted numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    for table in tables:
        # Each file resolved inside its folder: a symlink planted there is refused.
        table.frame.to_csv(checked_inside(folder, f"{table.name}.csv", what="report"),
                           index=False)


def write_figures(folder: Path, figures: Sequence[Figure]) -> None:
    """figures/<name>.png."""
    folder.mkdir(parents=True, exist_ok=True)
    for figure in figures:
        write_output(checked_inside(folder, f"{figure.name}.png", what="report"), figure.png,
                     what="report")


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    """frame.parquet: the whole frame, through the one Parquet writer and schema of the results
    (`bigtrain.results.parquet`), so it reads together with exported runs."""
    from bigtrain.results.parquet import write_parquet as write_frame

    write_frame(frame, path)


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("bigtrain.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
)


def write_html(path: Path, data: ReportData, sections: Sequence[Section],
               overview: Overview) -> None:
    """index.html: one file, CSS inline, every figure embedded as a data: URI; the summary first.

    jinja2 autoescapes every value, so data (machine names, reasons) never becomes markup.
    """
    template = _TEMPLATES.get_template("report.html.j2")
    page = template.render(
        title=f"bigbench report: {', '.join(data.sources) or 'no runs'}",
        generated=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        baseline=data.baseline,
        summary=f"{len(data.frame)} records from {len(data.runs)} run(s); {_status_counts(data)}",
        sections=sections,
        overview=overview,
        rows=display_rows,
        numeric=numeric_columns,
        data_uri=lambda fig: "data:image/png;base64," + base64.b64encode(fig.png).decode("ascii"),
        escape=html.escape,
    )
    write_output(path, page, what="report")
