"""`bigbench calibrate`: measure this machine's matmul and copy ceilings and store them, or show
the stored ones (`--show`) without measuring."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bigtrain.common.errors import BadInput


def parse_sizes(text: str | None) -> tuple[int, ...] | None:
    """'1024,2048' -> (1024, 2048); BadInput naming the flag and the bad value."""
    if text is None:
        return None
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 16 <= int(part) <= 65536:
            raise BadInput(
                f"--sizes: bad matrix size {part!r} in {text!r}; "
                "valid: comma-separated integers from 16 to 65536, e.g. 4096,8192"
            )
        sizes.append(int(part))
    return tuple(sizes)


def _measurement_flags_given(ctx: click.Context) -> list[str]:
    """The flags that only a measurement uses, where the user gave them."""
    given = []
    for name, flag in (("sizes", "--sizes"), ("repeats", "--repeats")):
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            given.append(flag)
    return given


@click.command("calibrate")
@click.option("--device", default="auto", show_default=True,
              help="Device to calibrate: auto, cpu, cuda or cuda:N.")
@click.option("--sizes", default=None,
              help="Comma-separated square matmul sizes [default: 1024 on CPU, 4096,8192 on GPU].")
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(1, 100),
              help="Timed repeats; the median is kept.")
@click.option("--show", is_flag=True,
              help="Print the stored calibration for the device; measures and writes nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the calibration (the new one, or the stored one with --show) as JSON.")
@click.pass_context
def calibrate(ctx: click.Context, device: str, sizes: str | None, repeats: int, show: bool,
              as_json: bool) -> None:
    """Measure matmul TFLOP/s per precision and copy bandwidth; store them for this machine.

    Sweeps then report each cell's percent of this measured peak and its optimizer step against
    the memory-bandwidth floor.
    """
    from bigtrain.measure.calibration import calibrate as run_calibration
    from bigtrain.measure.calibration import (
        check_calibration_dir_writable,
        resolve_device,
        save_calibration,
        stored_calibration,
    )

    size_list = parse_sizes(sizes)
    resolved = resolve_device(device)
    if show:
        if flags := _measurement_flags_given(ctx):
            raise BadInput(f"{', '.join(flags)}: --show prints the stored calibration and "
                           f"measures nothing; leave out --show to measure")
        result, path = stored_calibration(resolved)
        _print(result, path, as_json, verb="stored in")
        return
    # A read-only cache must cost an error now, not a measurement thrown away afterwards.
    check_calibration_dir_writable()
    progress = None if as_json else (lambda line: click.echo(f"  {line}"))
    if not as_json:
        click.echo(f"calibrating {resolved} ...")
    result = run_calibration(resolved, sizes=size_list, repeats=repeats, progress=progress)
    path = save_calibration(result)
    _print(result, path, as_json, verb="stored")


def _print(result, path: Path, as_json: bool, *, verb: str) -> None:  # noqa: ANN001
    if as_json:
        click.echo(json.dumps({**result.to_json(), "path": str(path)}, indent=2, sort_keys=True))
        return
    # Device names and notes come from the hardware, a stored file or an exception: data, printed
    # with its control characters made visible.
    from bigtrain.common.terminal_text import inert

    click.echo(inert(f"{result.device_name} ({result.device}), measured {result.created_at}"))
    for precision, tflops in result.matmul_tflops.items():
        click.echo(f"  matmul {precision:>5}: {tflops:10.3f} TFLOP/s "
                   f"(best of sizes, median of {result.repeats})")
    if result.copy_bandwidth_bytes_per_s is not None:
        click.echo(f"  copy bandwidth: {result.copy_bandwidth_bytes_per_s / 1e9:8.1f} GB/s "
                   f"(read + write)")
    for note in result.notes:
        click.echo(inert(f"  note: {note}"))
    click.echo(inert(f"{verb} {path}"))


COMMANDS = [calibrate]
