"""`bigbench profile`: run the matrix as `sweep` does (same flags and presets), profile every cell
after its timed window, and say where the time went: each cell's largest categories, the cells
whose profile failed (their timing stands), and a "why" line for each pair of cells that differ
in one axis ("batch norm on vs off: +41% step time, 78% of it in normalization (backward)").
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bigtrain.commands.sweep import profile_options, run_matrix, sweep_options

#: Categories named per cell on the terminal.
TOP_CATEGORIES = 3


@click.command()
@sweep_options
@profile_options
def profile(profile_steps, profile_shapes, **options) -> None:
    """Run the matrix, profile each cell after its timed window, say where the time goes.

    Each profiled cell leaves OUT/RUN_ID/profiles/<cell>/: trace.json.gz (Perfetto,
    chrome://tracing), ops.csv and ops.parquet, summary.json. Its step-time figures are those of
    its unprofiled window."""
    from bigtrain.measure.profile_settings import ProfileRequest

    outcome = run_matrix(profile=ProfileRequest(steps=profile_steps, shapes=profile_shapes),
                         **options)
    if outcome is None:  # --dry-run
        return
    if outcome.records and not outcome.interrupted:
        for line in where_the_time_goes(outcome.run_dir):
            click.echo(line)
    sys.exit(outcome.exit_code)


def where_the_time_goes(run_dir: Path) -> list[str]:
    """The terminal lines of a profiled run: per cell its largest categories (share of op time,
    per phase), failed profiles with the reason, then the "why" lines of one-axis pairs."""
    from bigtrain.cells.axes import compare_cell_label
    from bigtrain.common.terminal_text import inert
    from bigtrain.profiles.breakdown import (
        time_by_category_phase,
        total_op_time_us,
        why_lines,
    )
    from bigtrain.profiles.load import load_profiles

    found = load_profiles(run_dir)
    lines = [f"where the time goes ({len(found.profiles)} profiled cell(s)):"]
    for cell_id, profile in sorted(found.profiles.items()):
        total = total_op_time_us(profile) or 1.0
        parts = sorted(time_by_category_phase(profile).items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{category} ({phase}) {us / total * 100:.0f}%"
                          for (category, phase), us in parts[:TOP_CATEGORIES])
        launches = profile.summary.get("launches_per_step_by_phase") or {}
        optimizer = launches.get("optimizer") if isinstance(launches, dict) else None
        tail = (f"; optimizer launches/step {optimizer:g}"
                if isinstance(optimizer, (int, float)) else "")
        label = compare_cell_label(profile.axes) if profile.axes else cell_id
        lines.append(f"  {label}: {shown}{tail}")
    for cell_id, why in sorted({**found.invalid, **found.not_profiled}.items()):
        lines.append(f"  {cell_id}: no profile: {why}")
    answers = why_lines(found.profiles)
    if answers:
        lines.append("why:")
        for answer in answers:  # the pair differs in one axis: the baseline's label places it
            base = found.profiles[answer.baseline_cell]
            where = compare_cell_label(base.axes) if base.axes else answer.baseline_cell
            lines.append(f"  {answer.line}  [{where}]")
    return [inert(line) for line in lines]


COMMANDS = [profile]
