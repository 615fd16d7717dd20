"""`bigbench export RUN --format ...`: a run in other tools' formats.

Text formats go to stdout unless `-o FILE` (its missing folders are made); binary ones (Parquet)
need `-o`. The formats, their
choices and help come from the one registry, `bigtrain.compare.exports.EXPORT_FORMATS`. Never imports
torch.
"""

from __future__ import annotations

from pathlib import Path

import click

from bigtrain.common.errors import BadInput
from bigtrain.compare.exports import EXPORT_FORMATS, export_format
from bigtrain.results.output_paths import checked_output, write_output

_FORMAT_HELP = "; ".join(f"{f.name}: {f.help}" for f in EXPORT_FORMATS.values()) + "."


@click.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(tuple(EXPORT_FORMATS)), required=True,
              help=_FORMAT_HELP)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write here instead of stdout (required for "
              f"{', '.join(f.name for f in EXPORT_FORMATS.values() if f.binary)}).")
@click.option("--bigger-is-better", is_flag=True,
              help="github-action-benchmark only: export the higher-is-better metrics "
              "(throughput) for its customBiggerIsBetter tool instead of the lower-is-better ones.")
def export(run: Path, fmt: str, output: Path | None, bigger_is_better: bool) -> None:
    """Export the run folder RUN for github-action-benchmark, pytest-benchmark, or as a table."""
    from bigtrain.results.store import load_run

    chosen = export_format(fmt)
    if bigger_is_better and not chosen.has_direction:
        directed = ", ".join(f.name for f in EXPORT_FORMATS.values() if f.has_direction)
        raise BadInput(f"--bigger-is-better applies to --format {directed}, not {fmt}")
    if chosen.binary and output is None:
        raise BadInput(f"--format {fmt} is binary: give a file with -o/--output")
    if output is not None:  # refused before the run is even read: never onto a run's own files
        checked_output(output, what="-o")
    loaded = load_run(run)
    content = chosen.produce(loaded, bigger_is_better=bigger_is_better)
    if output is None:
        click.echo(content, nl=False)
    else:
        # `-o .benchmarks/<machine>/0001_x.json`: the folders the path names are made, no other.
        write_output(output, content, what="-o", make_parents=True)


COMMANDS = [export]
