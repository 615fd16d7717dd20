"""`bigbench profile-diff BASELINE CANDIDATE`: the op-level diff of two profiled runs.

For each cell both sides profiled that got slower: its ops ranked by added self time per step,
with their share of the regression and their call-count changes. A diagnosis, not a gate: exit 0
when it could diff, 2 when a side holds no usable profile or the sides share no profiled cell.
Imports only the analysing side (never torch, never pandas).
"""

from __future__ import annotations

from pathlib import Path

import click

from bigtrain.common.errors import BadInput


@click.command("profile-diff")
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="Ops shown per slower cell (the JSON holds every op).")
@click.option("--min-change", "min_change_pct", type=click.FloatRange(0, 1000), default=0.0,
              show_default=True, metavar="PCT",
              help="List a cell as slower only when its step time rose by more than PCT percent.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None,
              help="Also write the diff as Markdown here (appended to, so $GITHUB_STEP_SUMMARY "
                   "works).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Also write the whole diff as JSON here.")
def profile_diff(baseline: Path, candidate: Path, top: int, min_change_pct: float,
                 markdown_path: Path | None,
                 json_path: Path | None) -> None:
    """Which ops made CANDIDATE's cells slower than BASELINE's.

    BASELINE and CANDIDATE are run folders (results/<run_id>) of `bigbench profile` or
    `sweep --profile`, or profile folders (results/<run_id>/profiles[/<cell>]). A corrupt or
    truncated profile marks that cell invalid, with the reason, and the rest is diffed.
    """
    from bigtrain.compare.outputs import write_gate_files
    from bigtrain.profiles.diff import diff_runs
    from bigtrain.profiles.load import load_profiles, with_valid_traces
    from bigtrain.profiles.render import render_markdown, render_terminal

    # A truncated trace marks its cell invalid here too, though the diff reads the ops tables:
    # what the diff names must be openable in Perfetto.
    sides = {"baseline": with_valid_traces(load_profiles(baseline)),
             "candidate": with_valid_traces(load_profiles(candidate))}
    for name, side in sides.items():
        if not side.any:
            detail = "; ".join(f"{cell}: {why}" for cell, why in
                               [*side.invalid.items(), *side.not_profiled.items()][:5])
            raise BadInput(f"profile-diff: the {name} {side.path} holds no usable profile "
                           f"(profile it with `bigbench profile` or `bigbench sweep --profile`)"
                           + (f"; {detail}" if detail else ""))
    diff = diff_runs(sides["baseline"], sides["candidate"], min_change_pct=min_change_pct)
    if not diff.cells:
        raise BadInput(
            f"profile-diff: {baseline} and {candidate} share no profiled cell; baseline cells: "
            f"{', '.join(sorted(sides['baseline'].profiles))}; candidate cells: "
            f"{', '.join(sorted(sides['candidate'].profiles))}")
    write_gate_files(markdown_path=markdown_path, markdown=lambda: render_markdown(diff, top=top),
                     json_path=json_path, payload=diff.to_json)
    render_terminal(diff, top=top)


COMMANDS = [profile_diff]
