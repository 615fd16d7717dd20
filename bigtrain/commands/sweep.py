"""`bigbench sweep`: run the matrix."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn
from pathlib import Path

import click

from bigtrain.cells.axes import AXIS_TABLE
from bigtrain.cells.matrix import DEFAULT_MAX_CELLS
from bigtrain.commands.completion import complete_preset

AXIS_HELP = "comma-separated list; overrides the preset's axis"


def _axis_options(command):  # noqa: ANN001, ANN202 - click decorator
    """One `--flag LIST` per axis of the table, in table order; values arrive by axis name."""
    from bigtrain.commands.completion import axis_completer

    for axis in reversed(AXIS_TABLE):  # click lists options in the reverse order they are added
        command = click.option(axis.flag, axis.name, default=None, metavar="LIST",
                               help=f"{axis.help} ({AXIS_HELP})",
                               shell_complete=axis_completer(axis))(command)
    return command


def _quiet_options(command):  # noqa: ANN001, ANN202 - click decorator
    """`--require-quiet[=wait|refuse]` and its bound, shared by sweep and ab."""
    command = click.option(
        "--quiet-wait-s", type=click.FloatRange(min=0), default=300.0, show_default=True,
        help="with --require-quiet wait: give up (exit 2) after this many seconds")(command)
    return click.option(
        "--require-quiet", type=click.Choice(("wait", "refuse")), is_flag=False,
        flag_value="wait", default=None, metavar="[wait|refuse]",
        help="before running, measure what other processes use; if that leaves fewer free cores "
             "than the cells need, wait for a quiet machine (up to --quiet-wait-s) or refuse: "
             "exit 2 with the measured load")(command)


def check_quiet(policy: str | None, max_wait_s: float, cores_used: int) -> None:
    """`--require-quiet`: return once the machine is quiet; exit 2 (EXIT_BUSY) naming the load
    when it is not (refuse) or not within the bound (wait)."""
    if policy is None:
        return
    from bigtrain.common.exit_codes import EXIT_BUSY
    from bigtrain.measure import host_load as hl
    from bigtrain.common.terminal_text import inert

    def probe():  # noqa: ANN202
        return hl.sample_quiet(seconds=hl.QUIET_PROBE_S, cores_used=cores_used,
                               reader=hl.read_snapshot, sleep=hl.sleep)

    try:
        load = hl.require_quiet(policy, cores_used=cores_used, max_wait_s=max_wait_s,
                                probe=probe, sleep=hl.sleep, clock=hl.monotonic,
                                say=lambda line: click.echo(inert(f"bigbench: {line}"), err=True))
    except hl.MachineBusy as exc:
        click.echo(inert(f"bigbench: error: {exc}"), err=True)
        sys.exit(EXIT_BUSY)
    click.echo(inert(f"bigbench: machine quiet: {hl.describe(load.to_json())}"), err=True)


def cores_for_devices(devices) -> int:  # noqa: ANN001 - the spec's device tuple
    """Cores a sweep's cells use: one per GPU cell, every core for a CPU cell (torch's threads)."""
    from bigtrain.measure.host_load import host_cores

    return 1 if devices and all(str(d).startswith("cuda") for d in devices) else host_cores()


def profile_options(command):  # noqa: ANN001, ANN202 - click decorator
    """`--profile-steps N` and `--profile-shapes`, shared by `sweep --profile` and `profile`."""
    from bigtrain.measure.profile_settings import DEFAULT_PROFILE_STEPS, MAX_PROFILE_STEPS

    command = click.option(
        "--profile-shapes", is_flag=True,
        help="record each op's input shapes in the profile (a bigger trace; the roofline's "
             "bytes need them)")(command)
    return click.option(
        "--profile-steps", type=click.IntRange(1, MAX_PROFILE_STEPS),
        default=DEFAULT_PROFILE_STEPS, show_default=True,
        help="steps in each cell's profiled window (run after its timed window)")(command)


def sweep_options(command):  # noqa: ANN001, ANN202 - click decorator
    """Every option of `bigbench sweep` (the matrix, the run folder, the executor), so that a
    command that runs the matrix too (`bigbench profile`) declares them once, here."""
    for option in reversed(_SWEEP_OPTIONS):
        command = option(command)
    return command


_SWEEP_OPTIONS = (
    click.option("--preset", default="quick", show_default=True, shell_complete=complete_preset,
                 help="preset name in bench/presets/ or a path to a TOML file"),
    _axis_options,
    click.option("--warmup", type=float, default=None, help="warm-up budget per cell, seconds"),
    click.option("--duration", type=float, default=None, help="measured window per cell, seconds"),
    click.option("--min-steps", type=int, default=None, help="at least this many measured steps"),
    click.option("--repeats", type=int, default=None, help="run each cell N times, interleaved"),
    click.option("--cell-timeout", type=float, default=None,
                 help="kill a cell after this many seconds"),
    click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results"),
                 show_default=True, help="folder that holds run folders"),
    click.option("--run-id", default=None,
                 help="name of the run folder (default: time and host): 1-100 of A-Z a-z 0-9 "
                      ". _ -, starting with a letter or digit"),
    click.option("--resume", default=None, metavar="RUN_ID",
                 help="continue an interrupted run: only cells without a record run"),
    click.option("--retry-failed", is_flag=True, help="with --resume: rerun failed cells too"),
    click.option("--force", is_flag=True,
                 help="with --resume: resume even if spec or machine changed"),
    click.option("--fresh-workers", is_flag=True,
                 help="start a new worker process for every cell (slower; for comparison)"),
    click.option("--executor", default=None, metavar="NAME",
                 help="where cells run: local (worker processes on this machine), ray (a Ray "
                      "cluster; the ray extra) or a registered executor [default: local; on "
                      "--resume, the run's own]"),
    click.option("--ray-address", default=None, metavar="ADDR",
                 help="with --executor ray: the head node's host:port [default: RAY_ADDRESS, a "
                      "cluster started here with `ray start`, else a local one for this sweep]"),
    click.option("--max-cells", type=click.IntRange(min=1), default=DEFAULT_MAX_CELLS,
                 show_default=True, help="refuse a matrix of more axis combinations than this"),
    _quiet_options,
    click.option("--heartbeat-s", type=click.FloatRange(min=0), default=30.0, show_default=True,
                 help="off a terminal: a `still running` line this often while a cell runs "
                      "(0: none)"),
    click.option("--dry-run", is_flag=True, help="print the expanded cells and exit; runs nothing"),
    click.option("--no-report", is_flag=True, help="do not write reports/<run_id> at the end"),
)


@click.command()
@sweep_options
@click.option("--profile", "profile", is_flag=True,
              help="after each cell's timed window, profile a few steps (torch.profiler): "
                   "results/<run>/profiles/<cell>/; see `bigbench profile`")
@profile_options
def sweep(profile=False, profile_steps=None, profile_shapes=False,  # noqa: ANN001
          **options) -> None:
    """Run the benchmark matrix and record every cell in OUT/RUN_ID/."""
    from bigtrain.measure.profile_settings import DEFAULT_PROFILE_STEPS, ProfileRequest

    # `converge` invokes this callback without the profile flags (its cells time no steps).
    profile_steps = DEFAULT_PROFILE_STEPS if profile_steps is None else profile_steps
    if not profile and (profile_shapes or profile_steps != DEFAULT_PROFILE_STEPS):
        from bigtrain.common.errors import BadInput

        raise BadInput("--profile-steps and --profile-shapes need --profile "
                       "(or use `bigbench profile`)")
    request = ProfileRequest(steps=profile_steps, shapes=profile_shapes) if profile else None
    outcome = run_matrix(profile=request, **options)
    if outcome is not None:
        sys.exit(outcome.exit_code)


def run_matrix(preset, warmup, duration, min_steps, repeats, cell_timeout, out_dir, run_id,
               resume, retry_failed, force, fresh_workers, executor, ray_address, max_cells,
               require_quiet, quiet_wait_s, heartbeat_s, dry_run, no_report, profile=None,
               **axis_values):
    """Run (or dry-run: None) the matrix the sweep options name; the SweepOutcome."""
    from bigtrain.cells.spec import apply_overrides, spec_from_json, spec_from_preset
    from bigtrain.common.errors import BadInput
    from bigtrain.run.sweep import SweepOptions

    overrides = {
        **axis_values,  # one entry per axis flag, keyed by axis name
        "warmup_s": warmup, "duration_s": duration, "min_steps": min_steps, "repeats": repeats,
        "cell_timeout_s": cell_timeout,
    }
    if retry_failed and not resume:
        raise BadInput("--retry-failed needs --resume RUN_ID")
    if resume and run_id:
        raise BadInput("--run-id and --resume are exclusive; --resume names the run")
    # The options check --run-id and --resume (each names a folder under --out) before any path
    # is built from them.
    options = SweepOptions(out_dir=out_dir, run_id=run_id, resume=resume,
                           retry_failed=retry_failed, force=force,
                           reuse_workers=not fresh_workers, executor=executor,
                           executor_options={"address": ray_address} if ray_address else {},
                           max_cells=max_cells, ignore_signals_after_interrupt=True,
                           profile=profile)
    if resume:
        from bigtrain.results.store import read_manifest

        manifest = read_manifest(out_dir / resume)
        # Flags given with --resume change the run's own spec; the resume check names the change.
        spec = apply_overrides(spec_from_json(manifest.spec), overrides)
    else:
        spec = spec_from_preset(preset, overrides)

    if dry_run:
        if executor:  # a real sweep looks the name up itself (run_sweep), before any write
            from bigtrain.run.executor import executor_factory

            executor_factory(executor)  # an unknown name is exit 2
        _print_cells(spec, max_cells)
        return None

    check_quiet(require_quiet, quiet_wait_s, cores_for_devices(spec.device))
    from bigtrain.run.console import sweep_progress
    from bigtrain.run.sweep import run_sweep

    outcome = run_sweep(spec, options, sweep_progress(heartbeat_s))
    if not no_report and outcome.records and not outcome.interrupted:
        _write_report(outcome.run_dir)
    return outcome


def run_search_and_report(values: Mapping[str, Any], spec: Any, run: Callable[[Any], Any],
                          print_results: Callable[[Any], None]) -> NoReturn:
    """The tail `bigbench converge --tune-lr` and `bigbench fit` share: the quiet check, the run
    (`run(progress)` -> (outcome, results)) with live progress, its summary table, the report
    unless `--no-report`, and the outcome's exit code."""
    from bigtrain.run.console import sweep_progress

    check_quiet(values["require_quiet"], values["quiet_wait_s"], cores_for_devices(spec.device))
    outcome, results = run(sweep_progress(values["heartbeat_s"]))
    print_results(results)
    if not values["no_report"] and outcome.records and not outcome.interrupted:
        _write_report(outcome.run_dir)
    sys.exit(outcome.exit_code)


def _write_report(run_dir: Path) -> None:
    from bigtrain.common.terminal_text import inert
    from bigtrain.report import write_report
    from bigtrain.results.run_ids import check_run_id

    out = Path("reports") / check_run_id(run_dir.name, "run folder")
    try:
        index = write_report([run_dir], out)
    except Exception as exc:  # the run is recorded; a report failure must not hide that
        click.echo(inert(f"bigbench: report not written: {type(exc).__name__}: {exc}"), err=True)
        return
    # On stdout, beside the run folder: what a script or a CI step picks up.
    click.echo(inert(f"report: {index}"))


def _print_cells(spec, max_cells: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from bigtrain.cells.matrix import DeviceInventory, expand
    from bigtrain.common.terminal_text import data_text

    cells = expand(spec, DeviceInventory.detect(), max_cells=max_cells)
    # Every value is data (a preset path, a reason, a plugin's names): Text, never markup.
    table = Table(title=data_text(
        f"preset {spec.preset}: {len(cells)} cells x {spec.measure.repeats} repeat(s)"))
    # An optional axis every cell has at its default adds nothing but width (and squeezes the
    # reasons): its column is left out. Required axes are always shown.
    shown = [axis for axis in AXIS_TABLE
             if axis.required_in_preset
             or any((getattr(c, axis.name),) != axis.default for c in cells)]
    for column in ("cell_id", *(axis.column or axis.name for axis in shown), "status"):
        table.add_column(column)
    for c in cells:
        status = c.status if c.status == "pending" else f"{c.status}: {c.reason}"
        values = (getattr(c, axis.name) for axis in shown)
        table.add_row(*(data_text(value) for value in (c.cell_id, *values, status)))
    console = Console(width=200)
    console.print(table)
    runnable = sum(1 for c in cells if c.status == "pending")
    m = spec.measure
    how = (f"warm-up {m.warmup_s:g} s, window {m.duration_s:g} s (>= {m.min_steps} steps)"
           if spec.converge is None else
           f"train to target: <= {spec.converge.max_steps} steps, <= {spec.converge.max_time_s:g} "
           f"s, evaluated every {spec.converge.eval_every} steps")
    console.print(data_text(
        f"{runnable} to run, {len(cells) - runnable} skipped/unsupported; {how}, "
        f"{m.repeats} repeat(s)"))


COMMANDS = [sweep]
