"""`bigbench report RUN [RUN ..] [--baseline RUN] [-o DIR]`: tables and figures from run folders.

Imports only the analysing side (pandas, seaborn), inside the command, never torch.
"""

from __future__ import annotations

from pathlib import Path

import click

from bigtrain.common.errors import BadInput

#: Where reports go unless -o says otherwise: reports/<name>.
DEFAULT_REPORTS_DIR = Path("reports")


def default_report_name(runs: tuple[Path, ...]) -> str:
    """`<run>` for one run, `<first>-vs-<second>[-and-N-more]` for several.

    The name becomes a folder under reports/, so each run folder's name must be a valid run id
    (else BadInput asking for `-o DIR`); joined, they still make one safe file name.
    """
    from bigtrain.results.run_ids import check_run_id

    try:
        names = [check_run_id(Path(r).resolve().name, f"report name from {r}") for r in runs]
    except BadInput as exc:
        raise BadInput(f"{exc}; or pass -o DIR") from None
    if len(names) == 1:
        return names[0]
    name = f"{names[0]}-vs-{names[1]}"
    return name if len(names) == 2 else f"{name}-and-{len(names) - 2}-more"


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--baseline", type=click.Path(path_type=Path), default=None,
              help="Run folder the speedups are measured against (default: the first RUN).")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: reports/<run name>).")
@click.option("--price", "price_text", default=None, metavar="MACHINE=USD,..",
              help='Hourly prices in US dollars for price-performance, matched to machine names, '
                   'e.g. "NVIDIA H200=3.50,cpu=0.10". Without it no prices are shown.')
def report(runs: tuple[Path, ...], baseline: Path | None, out_dir: Path | None,
           price_text: str | None) -> None:
    """Write a report of one or more run folders: index.html, report.md, tables, figures, Parquet.

    RUN is a results folder (results/<run_id>, holding manifest.json and cells.jsonl). Cells are
    matched across runs by their axes, so runs from different machines line up row by row.
    """
    from bigtrain.report import write_report
    from bigtrain.report.prices import parse_prices
    from bigtrain.common.terminal_text import inert

    prices = parse_prices(price_text) if price_text is not None else None
    for run in runs:
        if not run.is_dir():
            raise BadInput(f"{run}: not a run folder (no such directory); pass results/<run_id>")
    if baseline is not None and not baseline.is_dir():
        raise BadInput(f"--baseline {baseline}: not a run folder (no such directory)")
    out_dir = out_dir or DEFAULT_REPORTS_DIR / default_report_name(runs)
    why: list[str] = []  # from profiled runs: where the step time of one-axis pairs went
    try:
        index = write_report(list(runs), out_dir, baseline=baseline, prices_usd_per_h=prices,
                             on_why=why.append)
    except OSError as exc:
        raise BadInput(f"cannot write the report to {out_dir}: {exc.strerror} "
                       f"({exc.filename})") from None
    click.echo(inert(f"report: {index}"))
    click.echo(inert(f"        {index.parent / 'report.md'} (Markdown), "
                     f"{index.parent / 'tables'}/*.csv, {index.parent / 'frame.parquet'}"))
    for line in why:
        click.echo(inert(f"why: {line}"))


COMMANDS = [report]
