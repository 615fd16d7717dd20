"""The report's "Where the time goes" section, present only when the runs hold profiles.

Tables (time by category per cell, top ops, launches per step by optimizer implementation, the
"why" of cells that differ in one axis, the roofline per category, HTA's GPU breakdown or why it
is absent, invalid profiles), figures (stacked bars of step time by category x phase per cell;
a roofline panel per cell) and links to each cell's trace and memory timeline.

Light by design (`bigbench report` over a profiled run stays within 2x its unprofiled time):
it reads each cell's summary.json and ops table only, never a trace.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from bigtrain.profiles.breakdown import time_by_category_phase, total_op_time_us, why_lines
from bigtrain.profiles.hta import analyse as hta_analyse
from bigtrain.profiles.hta import hta_available
from bigtrain.profiles.load import (
    CATEGORIES,
    PHASES,
    CellProfile,
    RunProfiles,
    may_have_profiles,
    profiles_of_run,
)
from bigtrain.profiles.roofline import BYTES_NOTE, ceilings_for, roofline
from bigtrain.report import style
from bigtrain.report.data import ReportData
from bigtrain.report.figures import Figure
from bigtrain.report.style import plt
from matplotlib.ticker import LogLocator, NullLocator
from bigtrain.report.tables import Table

SECTION_ANCHOR = "profiles"
SECTION_TITLE = "Where the time goes"
TABLE_NAMES = ("profile_categories", "profile_top_ops", "profile_launches", "profile_why",
               "profile_roofline", "profile_hta", "profile_invalid")
FIGURE_PREFIX = "profile-"
#: Top ops per cell in the top-ops table.
TOP_OPS = 5
#: Cells per stacked-bar figure, and roofline panels per figure.
BARS_PER_FIGURE = 30
ROOFLINES_PER_FIGURE = 12
MAX_ROOFLINE_PANELS = 24
#: One colour per category (Okabe-Ito, then greys), fixed across every figure of the report.
CATEGORY_COLOURS = dict(zip(CATEGORIES, (*style.OKABE_ITO[:7], "#999999", "#DDDDDD"), strict=True))


@dataclass(frozen=True)
class ProfileView:
    """What the section shows: its tables, figures, links and the "why" lines (for the terminal)."""

    tables: tuple[Table, ...]
    figures: tuple[Figure, ...]
    links: tuple[tuple[str, str], ...]
    why: tuple[str, ...]


@dataclass(frozen=True)
class _Cell:
    source: str
    label: str
    profile: CellProfile
    run: RunProfiles


def _text(value: object) -> str:
    """A label for matplotlib: `$` would start mathtext (and a parse error kills the figure)."""
    return str(value).replace("$", r"\$")


def profile_view(data: ReportData, out_dir: Path) -> ProfileView | None:
    """The section's content, or None when no run holds a profile (valid or not)."""
    from bigtrain.report.data import source_names

    names = source_names(data.runs)
    cells: list[_Cell] = []
    invalid_rows = []
    for run in data.runs:
        if not may_have_profiles(run):
            continue
        found = profiles_of_run(run)
        source = names[Path(run.path).resolve()]
        for cell_id, profile in found.profiles.items():
            cells.append(_Cell(source, _label(profile), profile, found))
        for cell_id, reason in {**found.invalid, **found.not_profiled}.items():
            invalid_rows.append({"source": source, "cell": cell_id, "reason": reason})
    if not cells and not invalid_rows:
        return None
    several = len({c.source for c in cells}) > 1
    if several:
        cells = [_Cell(c.source, f"{c.label} [{c.source}]", c.profile, c.run) for c in cells]
    tables = [t for t in (
        _categories_table(cells), _top_ops_table(cells), _launches_table(cells),
        _why_table(cells), _roofline_table(cells), _hta_table(cells),
        _invalid_table(invalid_rows)) if t is not None]
    figures = [*_stacked_figures(cells), *_roofline_figures(cells)]
    why = tuple(line for _, line in _why_lines(cells))  # cheap: the table's pairs again
    return ProfileView(tables=tuple(tables), figures=tuple(figures),
                       links=tuple(_links(cells, out_dir)), why=why)


def _label(profile: CellProfile) -> str:
    if not profile.axes:
        return profile.cell_id
    from bigtrain.cells.axes import compare_cell_label

    try:
        return compare_cell_label(profile.axes)
    except Exception:  # noqa: BLE001 - a label is a nicety; the cell id names the cell anyway
        return profile.cell_id


# -- tables -----------------------------------------------------------------------------------
def _categories_table(cells: Sequence[_Cell]) -> Table | None:
    rows = []
    for cell in cells:
        total = total_op_time_us(cell.profile)
        by_key = time_by_category_phase(cell.profile)
        row = {"cell": cell.label, "time basis": cell.profile.time_basis,
               "profiled step (ms)": (cell.profile.step_time_s_profiled or float("nan")) * 1e3,
               "op self time (ms)": total / 1e3}
        for category in CATEGORIES:
            us = sum(v for (c, _), v in by_key.items() if c == category)
            row[f"{category} (%)"] = us / total * 100 if total else float("nan")
        rows.append(row)
    frame = pd.DataFrame(rows)
    # Drop categories no cell spent time in (an MLP has no attention or normalization).
    empty = [c for c in frame.columns if c.endswith("(%)") and not (frame[c].fillna(0) > 0).any()]
    return Table("profile_categories", "Step time by op category",
                 "Share of each cell's op self time per category (profiled window; device time "
                 "on CUDA, host time on the CPU).", frame.drop(columns=empty))


def _top_ops_table(cells: Sequence[_Cell]) -> Table:
    rows = []
    for cell in cells:
        total = total_op_time_us(cell.profile) or float("nan")
        ranked = sorted(cell.profile.ops, key=lambda r: -cell.profile.op_time_us(r))[:TOP_OPS]
        for row in ranked:
            us = cell.profile.op_time_us(row)
            rows.append({"cell": cell.label, "op": row.op, "phase": row.phase,
                         "category": row.category, "self µs/step": us,
                         "share of op time (%)": us / total * 100,
                         "calls/step": row.calls_per_step})
    return Table("profile_top_ops", "Top ops", f"The {TOP_OPS} ops with the most self time "
                 "per step in each profiled cell.", pd.DataFrame(rows))


def _launches_table(cells: Sequence[_Cell]) -> Table | None:
    rows = []
    for cell in cells:
        launches = cell.profile.summary.get("launches_per_step_by_phase")
        if not isinstance(launches, dict):
            continue
        axes = cell.profile.axes
        row = {"cell": cell.label, "optimizer": axes.get("optimizer"), "impl": axes.get("impl")}
        for phase in PHASES:
            value = launches.get(phase)
            # "<phase> launches": the optimizer phase must not overwrite the optimizer's name
            row[f"{phase} launches"] = (float(value) if isinstance(value, (int, float))
                                        else float("nan"))
        kernels = cell.profile.summary.get("device_kernels_per_step")
        row["device kernels"] = float(kernels) if isinstance(kernels, (int, float)) else float("nan")
        rows.append(row)
    if not rows:
        return None
    frame = pd.DataFrame(rows).sort_values(["optimizer", "impl", "cell"], key=_natural)
    frame = frame.drop(columns=[c for c in frame.columns
                                if c.endswith(" launches") or c == "device kernels"
                                if frame[c].isna().all()])
    return Table("profile_launches", "Launches per step by optimizer implementation",
                 "Op launches per training step by phase (device kernels on CUDA): what separates "
                 "for-loop, foreach, fused and compiled optimizers.", frame.reset_index(drop=True))


def _natural(column: pd.Series) -> pd.Series:
    return column.astype(str).map(lambda v: tuple(str(p).zfill(12) for p in style.natural_key(v)))


def _why_lines(cells: Sequence[_Cell]) -> list[tuple[str, str]]:
    out = []
    by_source: dict[str, dict[str, CellProfile]] = {}
    for cell in cells:
        by_source.setdefault(cell.source, {})[cell.profile.cell_id] = cell.profile
    labels = {(c.source, c.profile.cell_id): c.label for c in cells}
    for source, profiles in by_source.items():
        for answer in why_lines(profiles):
            pair = (f"{labels[(source, answer.baseline_cell)]} -> "
                    f"{labels[(source, answer.candidate_cell)]}")
            out.append((pair, answer.line))
    return out


def _why_table(cells: Sequence[_Cell]) -> Table | None:
    lines = _why_lines(cells)
    if not lines:
        return None
    frame = pd.DataFrame([{"pair": pair, "where the difference went": line}
                          for pair, line in lines])
    return Table("profile_why", "Why one cell is slower than its neighbour",
                 "For two profiled cells that differ in one axis: the step-time change and the "
                 "category (phase) that took most of it.", frame)


def _roofline_table(cells: Sequence[_Cell]) -> Table | None:
    rows, sources = [], set()
    for cell in cells:
        ceilings = ceilings_for(cell.profile)
        sources.add(ceilings.source)
        for point in roofline(cell.profile, ceilings):
            rows.append({
                "cell": cell.label, "category": point.category,
                "GFLOP/s": (point.achieved_flops_per_s or 0.0) / 1e9,
                "GB/s (est.)": (point.achieved_bytes_per_s or 0.0) / 1e9,
                "FLOP/byte (est.)": point.intensity_flop_per_byte,
                "% of roof": point.pct_of_roof, "bound": point.bound})
    if not rows:
        return None
    return Table("profile_roofline", "Roofline per category",
                 "Achieved FLOP/s and bytes/s per op category against this machine's calibrated "
                 "matmul rate and copy bandwidth (`bigbench calibrate`).", pd.DataFrame(rows),
                 notes=(BYTES_NOTE, *sorted(f"ceilings: {s}" for s in sources)))


def _hta_table(cells: Sequence[_Cell]) -> Table:
    rows = []
    available = hta_available()
    for cell in cells:
        if not available:
            break
        result = hta_analyse(cell.profile)
        if not result.ran:
            rows.append({"cell": cell.label, "analysis": "—", "result": result.note})
            continue
        for name, table in result.tables.items():
            rows.append({"cell": cell.label, "analysis": name,
                         "result": "; ".join(", ".join(f"{k}={v}" for k, v in row.items())
                                             for row in table[:4])})
        for name, error in result.errors.items():
            rows.append({"cell": cell.label, "analysis": name, "result": f"failed: {error}"})
    from bigtrain.profiles.hta import NEEDS_CUDA, NEEDS_EXTRA

    if not available:
        note = NEEDS_EXTRA + "; " + NEEDS_CUDA.split(":")[0].lower()
        rows = [{"cell": "all", "analysis": "—", "result": note}]
    return Table("profile_hta", "GPU time breakdown (Holistic Trace Analysis)",
                 "Temporal breakdown (compute, communication, memory, idle), idle time, kernel "
                 "breakdown and, for data-parallel cells, communication/computation overlap.",
                 pd.DataFrame(rows), in_markdown=False)


def _invalid_table(rows: list[dict[str, str]]) -> Table | None:
    if not rows:
        return None
    return Table("profile_invalid", "Cells without a usable profile",
                 "Profiles that failed, were unsupported, or could not be read; their timing "
                 "records are untouched.", pd.DataFrame(rows))


# -- figures ----------------------------------------------------------------------------------
def _png(fig: object) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")  # type: ignore[attr-defined]
    plt.close(fig)
    return buffer.getvalue()


def _stacked_figures(cells: Sequence[_Cell]) -> list[Figure]:
    figures = []
    phases = [p for p in PHASES if any(r.phase == p for c in cells for r in c.profile.ops)]
    pieces = style.chunk(list(cells), BARS_PER_FIGURE)
    for index, piece in enumerate(pieces):
        if not piece:
            continue
        # Laid out in inches, not by a layout engine: that costs a second draw per figure.
        labels = [_text(style.wrap(c.label, 44)) for c in piece]
        left_in, panel_in, height = style.label_width_in(labels) + 0.2, 2.6, 1.5 + 0.32 * len(piece)
        width = left_in + panel_in * len(phases) + 0.3
        fig, axes = plt.subplots(1, len(phases), figsize=(width, height), sharey=True,
                                 squeeze=False)
        fig.subplots_adjust(left=left_in / width, right=1 - 0.3 / width, bottom=1.05 / height,
                            top=1 - 0.35 / height, wspace=0.12)
        for ax, phase in zip(axes[0], phases, strict=True):
            left = [0.0] * len(piece)
            for category in CATEGORIES:
                widths = [time_by_category_phase(c.profile).get((category, phase), 0.0) / 1e3
                          for c in piece]
                if not any(widths):
                    continue
                ax.barh(labels, widths, left=left, color=CATEGORY_COLOURS[category],
                        label=category, edgecolor="white", linewidth=0.4)
                left = [a + b for a, b in zip(left, widths, strict=True)]
            ax.set_title(phase)
            ax.set_xlabel("self time per step (ms)")
        axes[0][0].invert_yaxis()  # the first cell on top (the y axis is shared)
        handles: dict[str, object] = {}
        for ax in axes[0]:
            for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(name, handle)
        fig.legend(list(handles.values()), list(handles), loc="lower center",
                   ncols=min(5, len(handles)), fontsize=8, frameon=False)
        suffix = "" if len(pieces) == 1 else f" (part {index + 1} of {len(pieces)})"
        figures.append(Figure(f"{FIGURE_PREFIX}time-by-category-{index + 1}",
                              f"Step time by category and phase{suffix}",
                              "Op self time per step of each profiled cell, one panel per phase, "
                              "stacked by op category.", _png(fig)))
    return figures


def _roofline_figures(cells: Sequence[_Cell]) -> list[Figure]:
    figures = []
    drawable = [(c, ceilings_for(c.profile)) for c in cells]
    drawable = [(c, ceil) for c, ceil in drawable
                if any(p.achieved_flops_per_s and p.intensity_flop_per_byte
                       for p in roofline(c.profile, ceil))]
    # Each panel is a log-log plot (the costliest drawing of the report): at most
    # MAX_ROOFLINE_PANELS cells get one; the roofline table holds every cell.
    pieces = style.chunk(drawable[:MAX_ROOFLINE_PANELS], ROOFLINES_PER_FIGURE)
    for index, piece in enumerate(pieces):
        if not piece:
            continue
        columns = min(4, len(piece))
        rows = (len(piece) + columns - 1) // columns
        width, height = 3.4 * columns, 2.9 * rows + 0.7
        fig, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False)
        fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=1.0 / height,
                            top=1 - 0.35 / height, wspace=0.45, hspace=0.6)
        shown: dict[str, object] = {}
        for ax in axes.flat[len(piece):]:
            ax.set_visible(False)
        for ax, (cell, ceilings) in zip(axes.flat, piece, strict=False):
            points = [p for p in roofline(cell.profile, ceilings)
                      if p.achieved_flops_per_s and p.intensity_flop_per_byte]
            xs = [p.intensity_flop_per_byte for p in points]
            lo, hi = min(xs) / 4, max(xs) * 4
            if ceilings.peak_flops_per_s and ceilings.bandwidth_bytes_per_s:
                ridge = ceilings.ridge_flop_per_byte or hi
                lo, hi = min(lo, ridge / 4), max(hi, ridge * 4)
                grid = [lo * (hi / lo) ** (i / 60) for i in range(61)]
                ax.plot(grid, [min(ceilings.peak_flops_per_s, x * ceilings.bandwidth_bytes_per_s)
                               for x in grid], color="#444444", linewidth=1.2)
                shown.setdefault("roof", ax.lines[-1])
            for point in points:
                dot = ax.scatter(point.intensity_flop_per_byte, point.achieved_flops_per_s, s=28,
                                 color=CATEGORY_COLOURS[point.category], zorder=3)
                shown.setdefault(point.category, dot)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ys = [p.achieved_flops_per_s for p in points]
            ax.set_xlim(lo, hi)
            ax.set_ylim(min(ys) / 4, max(*ys, ceilings.peak_flops_per_s or 0.0) * 4)
            for axis in (ax.xaxis, ax.yaxis):
                # Minor log ticks are most of a log panel's drawing time: decades only.
                axis.set_major_locator(LogLocator(numticks=5))
                axis.set_minor_locator(NullLocator())
            ax.set_title(_text(style.wrap(cell.label, 40)), fontsize=8)
            ax.set_xlabel("FLOP/byte (est.)", fontsize=8)
            ax.set_ylabel("FLOP/s", fontsize=8)
            ax.tick_params(labelsize=8)
        fig.legend(list(shown.values()), list(shown), loc="lower center",
                   ncols=min(5, len(shown)), fontsize=8, frameon=False)
        suffix = "" if len(pieces) == 1 else f" (part {index + 1} of {len(pieces)})"
        figures.append(Figure(f"{FIGURE_PREFIX}roofline-{index + 1}", f"Roofline per cell{suffix}",
                              "Each op category's achieved FLOP/s against its estimated "
                              "arithmetic intensity, under this machine's calibrated roof (no "
                              "roof line: run `bigbench calibrate`). " + BYTES_NOTE + ".",
                              _png(fig)))
    return figures


# -- links ------------------------------------------------------------------------------------
def _links(cells: Sequence[_Cell], out_dir: Path) -> list[tuple[str, str]]:
    """(text, relative href) for each cell's trace and memory timeline; only files that resolve
    inside their run folder (CellProfile.relative_file checks the cell folder, itself checked
    inside the run folder by the loader)."""
    links = []
    base = Path(os.path.realpath(out_dir))
    for cell in cells:
        run_root = Path(os.path.realpath(cell.run.path))
        for key, what in (("trace", "trace (Perfetto / chrome://tracing)"),
                          ("memory_snapshot", "memory timeline")):
            target = cell.profile.relative_file(key)
            if target is None or run_root not in target.parents:
                continue
            href = quote(Path(os.path.relpath(target, base)).as_posix())
            links.append((f"{cell.label}: {what}", href))
    return links
