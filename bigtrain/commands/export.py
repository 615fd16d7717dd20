"""`bigbench export RUN --format ...`: a run in other tools' formats.

Text formats go to stdout unless `-o FILE`; Parquet needs `-o`. Never imports torch.
"""

from __future__ import annotations

from pathlib import Path

import click

from bigtrain.errors import BadInput

_FORMATS = ("github-action-benchmark", "pytest-benchmark", "csv", "parquet")


@click.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(_FORMATS), required=True,
              help="github-action-benchmark (customSmallerIsBetter JSON), pytest-benchmark "
              "(saved-run JSON), csv, or parquet.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write here instead of stdout (required for parquet).")
@click.option("--bigger-is-better", is_flag=True,
              help="github-action-benchmark only: export the higher-is-better metrics "
              "(throughput) for its customBiggerIsBetter tool instead of the lower-is-better ones.")
def export(run: Path, fmt: str, output: Path | None, bigger_is_better: bool) -> None:
    """Export the run folder RUN for github-action-benchmark, pytest-benchmark, or as a table."""
    from bigtrain.exports import export_text, write_parquet
    from bigtrain.results.store import load_run

    if bigger_is_better and fmt != "github-action-benchmark":
        raise BadInput(f"--bigger-is-better applies to --format github-action-benchmark, "
                       f"not {fmt}")
    if fmt == "parquet" and output is None:
        raise BadInput("--format parquet is binary: give a file with -o/--output")
    loaded = load_run(run)
    try:
        if fmt == "parquet":
            write_parquet(loaded, output)
            return
        text = export_text(loaded, fmt, bigger_is_better=bigger_is_better)
        if output is None:
            click.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write {exc.filename or output}: {exc.strerror}") from None


COMMANDS = [export]
