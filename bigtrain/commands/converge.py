"""`bigbench converge`: the sweep, with every cell trained to its held-out target.

A converge run is an ordinary sweep with another measurement protocol (`converge`, see
`bigtrain.measure.converge`) and its own presets: the sweep's axis, preset and run flags all work
(results folders, `--resume`, `--max-cells`, `--dry-run`, the report), plus the budgets below.
"""

from __future__ import annotations

import click

from bigtrain.commands.sweep import sweep
from bigtrain.commands.completion import complete_preset

#: The sweep's flags that measure step time, which a converge cell does not use.
_STEP_TIME_ONLY = ("warmup", "duration", "min_steps", "repeats", "preset",
                   "profile", "profile_steps", "profile_shapes")  # profiling: step-time cells


def _sweep_options() -> list[click.Parameter]:
    """The sweep command's options, less the step-time ones (`--seeds` replaces `--repeats`)."""
    return [param for param in sweep.params if param.name not in _STEP_TIME_ONLY]


@click.pass_context
def _converge(ctx: click.Context, preset: str, max_steps: int | None, max_time_s: float | None,
              eval_every: int | None, seeds: int | None, **sweep_values) -> None:
    """Train every cell to its held-out target, within budgets; record steps, seconds and joules
    to the target, and the loss curve, in OUT/RUN_ID/."""
    ctx.invoke(sweep.callback, preset=preset, warmup=None, duration=None, min_steps=None,
               repeats=seeds, protocol="converge", max_steps=max_steps, max_time_s=max_time_s,
               eval_every=eval_every, **sweep_values)


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
                     help="train each cell from N seeds (the spec's seed, +1, +2, ...)"),
    ],
)

COMMANDS = [converge]
