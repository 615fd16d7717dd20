"""`bigbench fit`: the largest batch size that trains, for each cell of the matrix.

The sweep's axis, preset and run flags all work (results folders, `--resume`, `--max-cells`,
`--dry-run`, the report), less `--batch-size` (the search sets it) and `--repeats` (each probe runs
once, the answer once more); see `bigtrain.run.fit` for the search and what "fits" means.
"""

from __future__ import annotations

import dataclasses

import click

from bigtrain.commands.sweep import sweep
from bigtrain.run.fit_search import (
    BATCH_SIZE_LIMIT,
    DEFAULT_BATCH_MAX,
    DEFAULT_BATCH_MIN,
    DEFAULT_MAX_PROBES,
    MAX_PROBES_LIMIT,
)

#: The sweep's flags a fit run does not take: the search sets the batch size, probes run once.
_NOT_FOR_FIT = ("batch_size", "repeats", "profile", "profile_steps", "profile_shapes")


def _sweep_options() -> list[click.Parameter]:
    """The sweep command's own option declarations, less the ones a fit run sets itself."""
    return [param for param in sweep.params if param.name not in _NOT_FOR_FIT]


@click.pass_context
def _fit(ctx: click.Context, memory_budget: str | None, memory_fraction: float | None,
         batch_min: int | None, batch_max: int | None, max_probes: int | None,
         **sweep_values) -> None:
    """For each cell (its axes less the batch size), find the largest batch size that trains:
    probe --batch-min, double while it fits, then bisect; every probe is a recorded cell in
    OUT/RUN_ID/, and the batch found is measured once more for its throughput."""
    from bigtrain.cells.spec import apply_overrides, spec_from_json, spec_from_preset
    from bigtrain.common.errors import BadInput
    from bigtrain.run.fit import FIT_SPEC_KEY, FitSettings
    from bigtrain.run.fit_memory import parse_memory_size
    from bigtrain.run.sweep import SweepOptions

    v = sweep_values
    axis_values = {k: val for k, val in v.items() if k not in _RUN_KEYS}
    overrides = {**axis_values, "warmup_s": v["warmup"], "duration_s": v["duration"],
                 "min_steps": v["min_steps"], "cell_timeout_s": v["cell_timeout"]}
    if v["retry_failed"] and not v["resume"]:
        raise BadInput("--retry-failed needs --resume RUN_ID")
    if v["resume"] and v["run_id"]:
        raise BadInput("--run-id and --resume are exclusive; --resume names the run")
    options = SweepOptions(out_dir=v["out_dir"], run_id=v["run_id"], resume=v["resume"],
                           retry_failed=v["retry_failed"], force=v["force"],
                           reuse_workers=not v["fresh_workers"], executor=v["executor"],
                           executor_options={"address": v["ray_address"]} if v["ray_address"] else {},
                           max_cells=v["max_cells"], ignore_signals_after_interrupt=True)
    given = {"batch_min": batch_min, "batch_max": batch_max, "max_probes": max_probes,
             "memory_budget_bytes": None if memory_budget is None else parse_memory_size(memory_budget),
             "memory_fraction": memory_fraction}
    if v["resume"]:
        from bigtrain.results.store import read_manifest

        manifest = read_manifest(v["out_dir"] / v["resume"])
        spec = apply_overrides(spec_from_json(manifest.spec), overrides)
        saved = dict(manifest.spec.get(FIT_SPEC_KEY) or {})
    else:
        spec = spec_from_preset(v["preset"], overrides)
        saved = {"batch_min": DEFAULT_BATCH_MIN, "batch_max": DEFAULT_BATCH_MAX,
                 "max_probes": DEFAULT_MAX_PROBES}
    merged = {**saved, **{k: val for k, val in given.items() if val is not None}}
    settings = FitSettings.from_json(merged)

    if v["dry_run"]:
        _dry_run(spec, settings, v["max_cells"], v["executor"])
        return

    from bigtrain.commands.sweep import run_search_and_report
    from bigtrain.run.fit import run_fit

    run_search_and_report(v, spec, lambda progress: run_fit(spec, settings, options, progress),
                          _print_results)


#: The sweep's run flags (everything of `sweep_values` that is not an axis).
_RUN_KEYS = frozenset({
    "preset", "warmup", "duration", "min_steps", "cell_timeout", "out_dir", "run_id", "resume",
    "retry_failed", "force", "fresh_workers", "executor", "ray_address", "max_cells",
    "require_quiet", "quiet_wait_s", "heartbeat_s", "dry_run", "no_report",
})


def _search_words(settings) -> str:  # noqa: ANN001 - FitSettings
    from bigtrain.run.fit_memory import CHECKED_PEAK, human_size

    b = settings.bounds
    budget = settings.memory_budget_bytes
    fits = (f"a probe fits when its recorded peak ({CHECKED_PEAK['cpu']} on the CPU, "
            f"{CHECKED_PEAK['cuda']} on CUDA) is within {human_size(budget)} "
            f"({budget:,} bytes)" if budget is not None else
            "a probe fits when it does not run out of the GPU's memory")
    cap = (f"; each GPU's allocator capped to {settings.memory_fraction:g} of its memory"
           if settings.memory_fraction is not None else "")
    return (f"search: batch sizes {b.batch_min} to {b.batch_max}, doubling then bisecting, at "
            f"most {b.max_probes} probes per cell; {fits}{cap}")


def _dry_run(spec, settings, max_cells: int, executor: str | None) -> None:  # noqa: ANN001
    """Print the groups and the search; check everything a real run checks before it writes."""
    from bigtrain.cells.matrix import DeviceInventory, expand
    from bigtrain.commands.sweep import _print_cells
    from bigtrain.common.terminal_text import inert
    from bigtrain.run.fit import check_fit_input, group_spec

    if executor:
        from bigtrain.run.executor import executor_factory

        executor_factory(executor)
    groups = expand(group_spec(spec), DeviceInventory.detect(), max_cells=max_cells)
    check_fit_input(spec, settings, groups)
    _print_cells(group_spec(spec), max_cells)
    click.echo(inert(_search_words(settings)))


def _print_results(results) -> None:  # noqa: ANN001 - list[GroupResult]
    """The answer per group on stderr (the report has it too), every value as data."""
    from rich.console import Console
    from rich.table import Table

    from bigtrain.cells.axes import PROGRESS_STYLE, cell_label
    from bigtrain.common.terminal_text import data_text
    from bigtrain.run.fit_memory import human_size

    if not results:
        return
    style = dataclasses.replace(PROGRESS_STYLE, order=tuple(
        a for a in PROGRESS_STYLE.order if a != "batch_size"))
    table = Table(title="bigbench fit: the largest batch that trains")
    for name in ("cell", "max batch", "first failing", "ends", "probes", "throughput at max",
                 "peak at max"):
        table.add_column(name)
    for result in results:
        c, r = result.conclusion, result.max_record
        axes = {k: v for k, v in result.group.axes().items() if k != "batch_size"}
        peak = None
        if r is not None:
            peak = r.peak_mem_allocated_bytes or r.peak_rss_bytes
        values = (
            cell_label(axes, style),
            "none" if c.max_batch_size is None else
            f"{c.max_batch_size}" + ("" if c.exact else " (at least)"),
            "-" if c.fail_batch_size is None else str(c.fail_batch_size),
            f"{c.stop}: {c.detail}",
            str(c.probes),
            f"{r.items_per_s:,.0f} {r.item_unit}/s" if r is not None and r.items_per_s else "-",
            human_size(peak),
        )
        table.add_row(*(data_text(value) for value in values))
    Console(stderr=True, width=200).print(table)


fit = click.Command(
    name="fit",
    callback=_fit,
    help=_fit.__doc__,
    short_help="The largest batch size that trains, per cell (doubling, then bisection).",
    params=[
        *_sweep_options(),
        click.Option(["--memory-budget"], default=None, metavar="SIZE",
                     help="a probe fits when its recorded peak memory is within SIZE (512MiB, "
                          "2GB, ...): the peak RSS on the CPU (required there), the allocator's "
                          "reserved peak on CUDA"),
        click.Option(["--memory-fraction"], type=float, default=None, metavar="F",
                     help="CUDA: cap each worker's allocator to this share of the GPU's memory "
                          "(0 < F <= 1; torch.cuda.set_per_process_memory_fraction)"),
        click.Option(["--batch-min"], type=click.IntRange(1, BATCH_SIZE_LIMIT), default=None,
                     help=f"the first batch size probed [default: {DEFAULT_BATCH_MIN}]"),
        click.Option(["--batch-max"], type=click.IntRange(1, BATCH_SIZE_LIMIT), default=None,
                     help=f"the largest batch size probed [default: {DEFAULT_BATCH_MAX}]"),
        click.Option(["--max-probes"], type=click.IntRange(1, MAX_PROBES_LIMIT), default=None,
                     help=f"at most this many probes per cell; past it the answer is a lower "
                          f"bound [default: {DEFAULT_MAX_PROBES}]"),
    ],
)

COMMANDS = [fit]
