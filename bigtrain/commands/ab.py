"""`bigbench ab`: the A/B gate for CI, paired round by round (and its hidden worker command).

Output and exit codes as `bigbench compare` (0 pass, 1 a regression or a failing cell, 2 bad
input), plus 3 when a cell stays undecided under `--undecided fail` (the default, see
bigtrain/ab/gate.py) and 130 when interrupted: the gate is then not passed, and both run folders
stay valid.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bigtrain.compare.undecided import DEFAULT_UNDECIDED, UNDECIDED_POLICIES
from bigtrain.commands.sweep import _axis_options, _quiet_options, check_quiet, profile_options
from bigtrain.compare.metrics import metric_names_text
from bigtrain.cells.matrix import DEFAULT_MAX_CELLS
from bigtrain.commands.completion import complete_preset

MODES = ("interleave", "duet")
#: `ab`'s default band. Measured on a quiet 2-vCPU box (docs/gating/ab.md, "Measured: a quiet
#: 2-vCPU box"): 72 duet rounds in 600 s resolve a few percent, while `compare`'s 5% default
#: (made for separate runs) leaves a 5% slower optimizer step undecided by construction.
AB_DEFAULT_THRESHOLD = "2%"


@click.command("ab")
@click.option("--preset", default="ci", show_default=True, shell_complete=complete_preset,
              help="preset name in bench/presets/ or a path to a TOML file")
@_axis_options
@click.option("--warmup", type=float, default=None, help="warm-up budget per cell, seconds")
@click.option("--duration", type=float, default=None, help="measured window per cell, seconds")
@click.option("--min-steps", type=int, default=None, help="at least this many measured steps")
@click.option("--cell-timeout", type=float, default=None, help="kill a cell after this many seconds")
@click.option("--baseline-python", default=None, metavar="PY",
              help="interpreter that runs the baseline's cells (its bigtrain and plugins) "
                   "[default: this one]")
@click.option("--candidate-python", default=None, metavar="PY",
              help="interpreter that runs the candidate's cells [default: this one]")
@click.option("--baseline-env", multiple=True, metavar="K=V",
              help="environment variable for the baseline's processes only (repeatable)")
@click.option("--candidate-env", multiple=True, metavar="K=V",
              help="environment variable for the candidate's processes only (repeatable)")
@click.option("--mode", type=click.Choice(MODES), default="interleave", show_default=True,
              help="interleave: one side after the other on one core; duet: both at once, one "
                   "core each, swapped every round (needs 2 cores)")
@click.option("--rounds", type=int, default=100, show_default=True,
              help="at most this many rounds, 3 or more (each runs every cell once per side); "
                   "the budget usually ends the run first")
@click.option("--budget-s", type=click.FloatRange(min=0, min_open=True), default=600.0,
              show_default=True, help="start no round that would end after this many seconds")
@click.option("--threshold", "threshold_spec", metavar="PCT|METRIC=PCT,..", default=None,
              help=f"smallest change that counts, as for compare (metrics: "
                   f"{metric_names_text()}). Default {AB_DEFAULT_THRESHOLD}: paired rounds "
                   f"resolve finer changes than separate runs, and a 5% band cannot catch a 5% "
                   f"slowdown")
@click.option("--alpha", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True),
              default=None, help="false-alarm rate of the whole gate (all cells and metrics)")
@click.option("--undecided", type=click.Choice(UNDECIDED_POLICIES), default=DEFAULT_UNDECIDED,
              show_default=True,
              help="what a cell still undecided at the end does: fail (exit 3: the run could not "
                   "rule out a regression as large as its smallest detectable change) or pass "
                   "(exit 0, with a warning)")
@click.option("--order-seed", type=int, default=None,
              help="seed of the rounds' random order [default: drawn, and recorded]")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None,
              help="also append a Markdown summary here ($GITHUB_STEP_SUMMARY works)")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="also write the comparison and the run's facts as JSON here")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results"),
              show_default=True, help="folder that holds the two run folders")
@click.option("--run-id", default=None,
              help="the run folders are RUN_ID-baseline and RUN_ID-candidate (default: time and "
                   "host)")
@click.option("--max-cells", type=click.IntRange(min=1), default=DEFAULT_MAX_CELLS,
              show_default=True, help="refuse a matrix of more axis combinations than this")
@_quiet_options
@click.option("--profile", is_flag=True,
              help="after the last round, profile every cell once per side in fresh workers "
                   "(their records stay out of the comparison); a regressed cell's op diff "
                   "then names the ops behind it")
@profile_options
def ab(preset, warmup, duration, min_steps, cell_timeout, baseline_python, candidate_python,
       baseline_env, candidate_env, mode, rounds, budget_s, threshold_spec, alpha, undecided,
       order_seed,
       markdown_path, json_path, out_dir, run_id, max_cells, require_quiet, quiet_wait_s,
       profile, profile_steps, profile_shapes, **axis_values) -> None:
    """Compare two Python environments (e.g. main's venv and a pull request's) cell by cell,
    in paired rounds on this machine; neither given: an A/A run measuring the gate's own noise."""
    from bigtrain.ab.driver import AbOptions, run_ab
    from bigtrain.ab.sides import BASELINE, CANDIDATE, Side, check_python, parse_env_pairs
    from bigtrain.compare import parse_thresholds
    from bigtrain.cells.spec import spec_from_preset

    spec = spec_from_preset(preset, {**axis_values, "warmup_s": warmup, "duration_s": duration,
                                     "min_steps": min_steps, "cell_timeout_s": cell_timeout})
    sides = {
        BASELINE: Side(name=BASELINE, python=check_python(baseline_python, "--baseline-python"),
                       env=parse_env_pairs(baseline_env, "--baseline-env")),
        CANDIDATE: Side(name=CANDIDATE, python=check_python(candidate_python, "--candidate-python"),
                        env=parse_env_pairs(candidate_env, "--candidate-env")),
    }
    options = AbOptions(out_dir=out_dir, run_id=run_id, mode=mode, max_rounds=rounds,
                        budget_s=budget_s, order_seed=order_seed,
                        thresholds_pct=parse_thresholds(AB_DEFAULT_THRESHOLD if threshold_spec is None
                                                        else threshold_spec),
                        alpha=alpha,
                        max_cells=max_cells, profile=_profile_request(profile, profile_steps,
                                                                      profile_shapes))
    # interleave runs one side at a time on one core, duet both at once on two
    check_quiet(require_quiet, quiet_wait_s, 2 if mode == "duet" else 1)
    outcome = run_ab(spec, sides, options, on_round=_print_round,
                     ignore_signals_after_interrupt=True)
    _render(outcome, markdown_path, json_path, undecided)
    from bigtrain.compare.undecided import gate_exit_code

    sys.exit(gate_exit_code(outcome.result, outcome.exit_code, undecided=undecided))


def _profile_request(profile: bool, steps: int, shapes: bool):  # noqa: ANN202
    from bigtrain.measure.profile_settings import ProfileRequest

    if not profile:
        if shapes or steps != ProfileRequest().steps:
            from bigtrain.common.errors import BadInput

            raise BadInput("--profile-steps and --profile-shapes need --profile")
        return None
    return ProfileRequest(steps=steps, shapes=shapes)


def _print_round(report) -> None:  # noqa: ANN001 - a RoundReport
    from bigtrain.ab.report import round_line

    click.echo(round_line(report), err=True)


def _render(outcome, markdown_path: Path | None, json_path: Path | None,  # noqa: ANN001
            undecided: str) -> None:
    from bigtrain.ab.report import outcome_json, outcome_lines, outcome_markdown
    from bigtrain.compare import render_terminal
    from bigtrain.compare.outputs import write_gate_files
    from bigtrain.common.terminal_text import inert

    write_gate_files(
        markdown_path=markdown_path,
        markdown=((lambda: outcome_markdown(outcome, undecided))
                  if outcome.result is not None else None),
        json_path=json_path, payload=lambda: outcome_json(outcome, undecided))
    if outcome.result is not None:
        render_terminal(outcome.result)
        from bigtrain.profiles.gate import ab_op_diffs

        for line in ab_op_diffs(outcome).lines():
            click.echo(line)
    for line in outcome_lines(outcome, undecided):
        click.echo(inert(line))


@click.command("ab-worker", hidden=True)
@click.option("--protocol", type=int, default=None, help="the message protocol the driver speaks")
@click.option("--core", type=int, default=None, help="pin to this CPU core")
@click.option("--describe", is_flag=True, help="print what this side is, as JSON, and exit")
def ab_worker(protocol: int | None, core: int | None, describe: bool) -> None:
    """Internal: the worker process of `bigbench ab` (see bigtrain/ab/protocol.py)."""
    from bigtrain.ab import worker

    if describe:
        from bigtrain.ab.protocol import send

        send(worker.message_channel(), worker.describe())
        return
    if protocol is None:
        raise click.UsageError("ab-worker needs --protocol N (it is started by `bigbench ab`)")
    sys.exit(worker.serve(protocol=protocol, core=core))


COMMANDS = [ab, ab_worker]
