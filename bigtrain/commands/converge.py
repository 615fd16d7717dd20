"""`bigbench converge`: the sweep, with every cell trained to its held-out target.

A converge run is an ordinary sweep with another measurement protocol (`converge`, see
`bigtrain.measure.converge`) and its own presets: the sweep's axis, preset and run flags all work
(results folders, `--resume`, `--max-cells`, `--dry-run`, the report), plus the budgets below.
With `--tune-lr N`, each cell less its lr gets an lr search of N trials first and the lr chosen is
trained from the `--seeds` (`bigtrain.run.tune`).
"""

from __future__ import annotations


import click

from bigtrain.commands.completion import complete_preset
from bigtrain.commands.sweep import sweep
from bigtrain.run.tune_limits import MAX_TRIALS

#: The sweep's flags that measure step time, which a converge cell does not use.
_STEP_TIME_ONLY = ("warmup", "duration", "min_steps", "repeats", "preset",
                   "profile", "profile_steps", "profile_shapes")  # profiling: step-time cells


def _sweep_options() -> list[click.Parameter]:
    """The sweep command's options, less the step-time ones (`--seeds` replaces `--repeats`)."""
    return [param for param in sweep.params if param.name not in _STEP_TIME_ONLY]


@click.pass_context
def _converge(ctx: click.Context, preset: str, max_steps: int | None, max_time_s: float | None,
              eval_every: int | None, seeds: int | None, tune_lr: int | None,
              tune_budget_s: float | None, **sweep_values) -> None:
    """Train every cell to its held-out target, within budgets; record steps, seconds and joules
    to the target, and the loss curve, in OUT/RUN_ID/. With --tune-lr N, search each cell's lr
    first (N recorded trials) and train the lr chosen from fresh seeds."""
    budgets = {"max_steps": max_steps, "max_time_s": max_time_s, "eval_every": eval_every}
    if tune_lr is not None or tune_budget_s is not None or _resumes_tuned_run(sweep_values):
        _tuned(preset, budgets, seeds, tune_lr, tune_budget_s, sweep_values)
        return
    ctx.invoke(sweep.callback, preset=preset, warmup=None, duration=None, min_steps=None,
               repeats=seeds, protocol="converge", **budgets, **sweep_values)


def _resumes_tuned_run(values: dict) -> bool:
    """`--resume RUN` of a run made with --tune-lr: it resumes as one, without the flag again."""
    if not values.get("resume"):
        return False
    from bigtrain.results.run_ids import check_run_id
    from bigtrain.results.store import read_manifest
    from bigtrain.run.tune import TUNE_SPEC_KEY

    check_run_id(values["resume"], "--resume")
    return TUNE_SPEC_KEY in read_manifest(values["out_dir"] / values["resume"]).spec


def _tuned(preset: str, budgets: dict, seeds: int | None, tune_lr: int | None,
           tune_budget_s: float | None, v: dict) -> None:
    """The --tune-lr run: the searches, their finals, the summary, the report, the exit code."""
    from bigtrain.cells.axes import AXIS_NAMES
    from bigtrain.cells.spec import apply_overrides, spec_from_json, spec_from_preset
    from bigtrain.common.errors import BadInput
    from bigtrain.run.sweep import SweepOptions
    from bigtrain.run.tune import TUNE_SPEC_KEY, TuneSettings

    overrides = {**{k: v[k] for k in AXIS_NAMES}, **budgets, "repeats": seeds,
                 "cell_timeout_s": v["cell_timeout"], "protocol": "converge"}
    if v["retry_failed"] and not v["resume"]:
        raise BadInput("--retry-failed needs --resume RUN_ID")
    if v["resume"] and v["run_id"]:
        raise BadInput("--run-id and --resume are exclusive; --resume names the run")
    options = SweepOptions(
        out_dir=v["out_dir"], run_id=v["run_id"], resume=v["resume"],
        retry_failed=v["retry_failed"], force=v["force"], reuse_workers=not v["fresh_workers"],
        executor=v["executor"], max_cells=v["max_cells"], ignore_signals_after_interrupt=True,
        executor_options={"address": v["ray_address"]} if v["ray_address"] else {})
    saved: dict = {}
    if v["resume"]:
        from bigtrain.results.store import read_manifest

        manifest = read_manifest(v["out_dir"] / v["resume"])
        spec = apply_overrides(spec_from_json(manifest.spec), overrides)
        saved = dict(manifest.spec.get(TUNE_SPEC_KEY) or {})
    else:
        spec = spec_from_preset(preset, overrides)
    if tune_lr is None and not saved:
        raise BadInput("--tune-budget-s bounds an lr search: give --tune-lr N as well")
    given = {"trials": tune_lr, "budget_s": tune_budget_s}
    settings = TuneSettings.from_json({**saved, **{k: x for k, x in given.items() if x is not None}})

    if v["dry_run"]:
        _dry_run(spec, settings, v["max_cells"], v["executor"])
        return
    from bigtrain.commands.sweep import run_search_and_report
    from bigtrain.run.tune import run_tune

    run_search_and_report(v, spec, lambda progress: run_tune(spec, settings, options, progress),
                          _print_results)


def _search_words(settings, seeds: int) -> str:
    budget = (f", stopping once {settings.budget_s:g} s of trials are spent"
              if settings.budget_s is not None else "")
    return (f"lr search: {settings.trials} trial(s) per group in half-decade steps around each "
            f"optimizer's default lr (the default first){budget}; the lr with the fewest steps "
            f"to target is trained from {seeds} fresh seed(s)")


def _dry_run(spec, settings, max_cells: int, executor: str | None) -> None:
    """Print the groups, each one's trial lrs and the rule; check what a real run checks."""
    from bigtrain.cells.axes import PROGRESS_STYLE, cell_label
    from bigtrain.cells.matrix import PENDING, DeviceInventory, expand
    from bigtrain.commands.sweep import _print_cells
    from bigtrain.common.terminal_text import inert
    from bigtrain.run.tune import check_tune_input, group_spec
    from bigtrain.run.tune_search import trial_lrs

    if executor:
        from bigtrain.run.executor import executor_factory

        executor_factory(executor)
    groups = expand(group_spec(spec), DeviceInventory.detect(), max_cells=max_cells)
    defaults = check_tune_input(spec, groups)
    _print_cells(group_spec(spec), max_cells)
    for group in groups:
        if group.status == PENDING:
            lrs = ", ".join(f"{lr:g}" for lr in trial_lrs(defaults[group.optimizer],
                                                         settings.trials))
            click.echo(inert(f"{cell_label(group.axes(), PROGRESS_STYLE)}: trial lrs {lrs}"))
    click.echo(inert(_search_words(settings, spec.measure.repeats)))


def _print_results(results) -> None:
    """Each group's search on stderr (the report has it too), every value as data."""
    from rich.console import Console
    from rich.table import Table

    from bigtrain.cells.axes import PROGRESS_STYLE, cell_label
    from bigtrain.common.terminal_text import data_text

    if not results:
        return
    table = Table(title="bigbench converge --tune-lr: the lr searches")
    for name in ("group", "lr chosen", "trials", "ended", "tuning cost"):
        table.add_column(name)
    for result in results:
        chosen = result.chosen
        if result.stop == "budget":
            ended = (f"budget spent ({result.cost_s:.1f} s of {result.budget_s:g} s) after "
                     f"{len(result.trials)} of {result.planned} trials")
        else:
            ended = f"all {result.planned} trials ran"
        tried = ", ".join(f"{t.lr:g}: {t.status}" + (f" in {t.steps_to_target} steps"
                                                     if t.steps_to_target is not None else "")
                          for t in result.trials)
        values = (cell_label(result.group.axes(), PROGRESS_STYLE),
                  "none (no trial usable)" if chosen is None else f"{chosen.lr:g}",
                  tried, ended, f"{result.cost_s:.1f} s")
        table.add_row(*(data_text(value) for value in values))
    Console(stderr=True, width=200).print(table)


converge = click.Command(
    name="converge",
    callback=_converge,
    help=_converge.__doc__,
    short_help="Train each cell to a held-out target: steps, seconds and joules to get there.",
    params=[
        click.Option(["--preset"], default="converge-quick", show_default=True,
                     shell_complete=complete_preset,
                     help="preset name in bench/presets/ or a path to a TOML file"),
        *_sweep_options(),
        click.Option(["--max-steps"], type=click.IntRange(min=1), default=None,
                     help="per cell: stop (not_reached) after this many optimizer steps"),
        click.Option(["--max-time-s"], type=click.FloatRange(min=0, min_open=True), default=None,
                     help="per cell: stop (not_reached) after this many seconds of training "
                          "(data loading included, evaluation not)"),
        click.Option(["--eval-every"], type=click.IntRange(min=1), default=None,
                     help="evaluate on the held-out split every N steps"),
        click.Option(["--seeds"], type=click.IntRange(min=1), default=None,
                     help="train each cell from N seeds (the spec's seed, +1, +2, ...; with "
                          "--tune-lr: +1 .. +N, the spec's seed being the trials')"),
        click.Option(["--tune-lr"], type=click.IntRange(1, MAX_TRIALS), default=None,
                     metavar="N",
                     help="per cell less its lr: N trials in half-decade steps around the "
                          "optimizer's default lr (each a recorded converge cell), then the lr "
                          "with the fewest steps to target trained from --seeds fresh seeds"),
        click.Option(["--tune-budget-s"], type=click.FloatRange(min=0, min_open=True),
                     default=None, metavar="S",
                     help="with --tune-lr: per group, start no further trial once the trials "
                          "took S seconds (training plus evaluation)"),
    ],
)

COMMANDS = [converge]
