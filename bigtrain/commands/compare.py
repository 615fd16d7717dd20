"""`bigbench compare BASELINE CANDIDATE`: the regression gate for CI.

Several run folders a side: `--baseline DIR --baseline DIR2 --candidate DIR3 ...` (records of one
cell from several folders are pooled as repeats). `--paired`: the folders are the two sides of
`bigbench ab`, judged round by round (bigtrain/compare/paired.py).

Exit 0 when nothing regressed or failed, 1 when something did, 3 when a cell is undecided (the
noise leaves a change beyond the threshold possible; `--undecided pass` makes that a warning), 2 on
bad usage or unreadable input.
Imports only the analysing side (never torch), so it starts fast on a machine without a GPU stack;
the metric names of the help text come from the metric definitions (light: no pandas either).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from bigtrain.common.errors import BadInput
from bigtrain.common.exit_codes import EXIT_OK, EXIT_REGRESSION
from bigtrain.common.terminal_text import inert
from bigtrain.compare.metrics import metric_names_text
from bigtrain.compare.result import MISSING
from bigtrain.compare.stats import DEFAULT_ALPHA
from bigtrain.compare.undecided import (
    DEFAULT_UNDECIDED,
    UNDECIDED_POLICIES,
    gate_exit_code,
    undecided_lines,
)

_USAGE = ("give two run folders (bigbench compare BASELINE CANDIDATE) or at least one "
          "--baseline DIR and one --candidate DIR, not both forms")


@click.command("compare")
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path), metavar="[BASELINE CANDIDATE]")
@click.option("--baseline", "baseline_dirs", multiple=True, type=click.Path(path_type=Path),
              metavar="DIR", help="A baseline run folder; repeat it to pool several runs.")
@click.option("--candidate", "candidate_dirs", multiple=True, type=click.Path(path_type=Path),
              metavar="DIR", help="A candidate run folder; repeat it to pool several runs.")
@click.option(
    "--threshold",
    "threshold_spec",
    metavar="PCT|METRIC=PCT,..",
    default=None,
    help="Smallest change that counts, in percent: `5%` for every metric, or per metric, e.g. "
    f"`step_time=5%,peak_mem=2%` (metrics: {metric_names_text()}). Default 5%.",
)
@click.option("--alpha", type=float, default=DEFAULT_ALPHA, show_default=True,
              help="Significance level of the noise test; with --paired, the chance of any false "
                   "alarm in the whole gate run.")
@click.option("--paired", is_flag=True,
              help="The folders are the two sides of `bigbench ab`: records with the same repeat "
                   "number ran in the same round; judge the per-round ratios.")
@click.option("--undecided", type=click.Choice(UNDECIDED_POLICIES), default=None,
              help=f"What a cell the noise left undecided (its interval reaches past the "
                   f"threshold) does to the exit code: fail (exit 3, the default: the runs did "
                   f"not rule out a regression) or pass (with a warning). "
                   f"[default: {DEFAULT_UNDECIDED}]")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None,
              help="Also write a Markdown summary here (appended to, so $GITHUB_STEP_SUMMARY works).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Also write the full comparison as JSON here.")
@click.option("--allow-missing", is_flag=True,
              help="Pass the gate even when cells of the baseline have no record in the "
                   "candidate (by default they fail it: a candidate that ran nothing is no pass).")
@click.option("--allow-different-hardware", is_flag=True,
              help="Compare even when GPU, driver, torch, CUDA or CPU differ between the runs.")
def compare(
    folders: tuple[Path, ...],
    baseline_dirs: tuple[Path, ...],
    candidate_dirs: tuple[Path, ...],
    threshold_spec: str | None,
    alpha: float,
    paired: bool,
    undecided: str | None,
    markdown_path: Path | None,
    json_path: Path | None,
    allow_missing: bool,
    allow_different_hardware: bool,
) -> None:
    """Compare CANDIDATE against BASELINE (run folders), cell by cell and metric by metric.

    A metric regresses only when it moved the wrong way by more than the threshold AND by more
    than the noise (a Welch t-test on the per-repeat values when both runs have repeats, else a
    Mann-Whitney U test on the step times; with --paired, an interval of the per-round ratios
    beyond the threshold). It is unchanged only when the interval of the ratio lies inside the
    threshold band, undecided when the interval reaches past it. Exit code 1 when anything
    regressed or failed, 3 when a cell is undecided (see --undecided).
    """
    from bigtrain.compare import (
        compare_runs,
        parse_thresholds,
        render_terminal,
        to_json,
    )
    from bigtrain.compare.gate import load_runs
    from bigtrain.compare.outputs import write_gate_files
    from bigtrain.compare.paired import compare_paired_runs

    if folders and (baseline_dirs or candidate_dirs):
        raise BadInput(f"compare: {_USAGE}")
    if folders:
        if len(folders) != 2:
            raise BadInput(f"compare: got {len(folders)} folder(s) as arguments; {_USAGE}")
        baseline_dirs, candidate_dirs = (folders[0],), (folders[1],)
    if not baseline_dirs or not candidate_dirs:
        raise BadInput(f"compare: {_USAGE}")
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha {alpha!r}: must be between 0 and 1 (exclusive), e.g. 0.01")
    thresholds = parse_thresholds(threshold_spec)
    baseline_runs, candidate_runs = load_runs(baseline_dirs), load_runs(candidate_dirs)
    for side, runs in (("baseline", baseline_runs), ("candidate", candidate_runs)):
        if not any(run.records for run in runs):
            folders_text = ", ".join(str(run.path) for run in runs)
            raise BadInput(f"compare: the {side} ({folders_text}) holds no records (its "
                           f"cells.jsonl is empty or missing): there is nothing to compare, and "
                           f"a gate never passes on nothing")
    if paired:
        comparison = compare_paired_runs(baseline_runs, candidate_runs, thresholds=thresholds,
                                         alpha=alpha,
                                         allow_different_hardware=allow_different_hardware)
    else:
        comparison = compare_runs(baseline_runs, candidate_runs, thresholds_pct=thresholds,
                                  alpha=alpha, allow_different_hardware=allow_different_hardware)
    comparison = dataclasses.replace(comparison, missing_fails=not allow_missing)
    # Where both sides profiled a regressed cell: the ops behind it (nothing without profiles).
    from bigtrain.profiles.gate import regressed_cell_diffs, with_op_diffs

    op_diffs = regressed_cell_diffs(comparison, baseline_runs, candidate_runs)
    markdown, payload = with_op_diffs(op_diffs, comparison, lambda: to_json(comparison))
    write_gate_files(markdown_path=markdown_path, markdown=markdown, json_path=json_path,
                     payload=payload)
    # Files first: what CI keeps never depends on the terminal (which prints data as text).
    render_terminal(comparison)
    for line in op_diffs.lines():
        click.echo(line)
    missing = comparison.counts().get(MISSING, 0)
    if missing and not allow_missing:
        click.echo(f"{missing} cell(s) of the baseline have no record in the candidate: the gate "
                   f"fails on them (pass --allow-missing to accept a candidate that ran fewer "
                   f"cells)")
    code = EXIT_REGRESSION if comparison.gate_failed else EXIT_OK
    # The same policy as `bigbench ab`'s: evidence that decided nothing is no pass.
    policy = undecided or DEFAULT_UNDECIDED
    for line in undecided_lines(comparison, policy):
        click.echo(inert(line))
    code = gate_exit_code(comparison, code, undecided=policy)
    if code != EXIT_OK:
        click.get_current_context().exit(code)


COMMANDS = [compare]
