"""`bigbench compare BASELINE CANDIDATE`: the regression gate for CI.

Exit 0 when nothing regressed or failed, 1 when something did, 2 on bad usage or unreadable input.
Imports only the analysing side (never torch), so it starts fast on a machine without a GPU stack;
the metric names of the help text come from the metric definitions (light: no pandas either).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bigtrain.compare.metrics import metric_names_text
from bigtrain.errors import BadInput
from bigtrain.exit_codes import EXIT_REGRESSION


@click.command("compare")
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option(
    "--threshold",
    "threshold_spec",
    metavar="PCT|METRIC=PCT,..",
    default=None,
    help="Smallest change that counts, in percent: `5%` for every metric, or per metric, e.g. "
    f"`step_time=5%,peak_mem=2%` (metrics: {metric_names_text()}). Default 5%.",
)
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None,
              help="Also write a Markdown summary here (appended to, so $GITHUB_STEP_SUMMARY works).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Also write the full comparison as JSON here.")
@click.option("--allow-different-hardware", is_flag=True,
              help="Compare even when GPU, driver, torch, CUDA or CPU differ between the runs.")
def compare(
    baseline: Path,
    candidate: Path,
    threshold_spec: str | None,
    markdown_path: Path | None,
    json_path: Path | None,
    allow_different_hardware: bool,
) -> None:
    """Compare CANDIDATE against BASELINE (two run folders), cell by cell and metric by metric.

    A metric regresses only when it moved the wrong way by more than the threshold AND by more
    than the noise (a Welch t-test on the per-repeat values when both runs have repeats, else a
    Mann-Whitney U test on the step times). Exit code 1 when anything regressed or failed.
    """
    from bigtrain.compare import (
        compare_run_dirs,
        parse_thresholds,
        render_markdown,
        render_terminal,
        to_json,
    )

    thresholds = parse_thresholds(threshold_spec)
    comparison = compare_run_dirs(
        baseline,
        candidate,
        thresholds_pct=thresholds,
        allow_different_hardware=allow_different_hardware,
    )
    try:
        if markdown_path is not None:
            # Append: a CI step may already have written to $GITHUB_STEP_SUMMARY.
            with open(markdown_path, "a", encoding="utf-8") as fh:
                fh.write(render_markdown(comparison))
        if json_path is not None:
            text = json.dumps(to_json(comparison), indent=2, allow_nan=False) + "\n"
            json_path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write {exc.filename}: {exc.strerror}") from None
    # Files first: what CI keeps never depends on the terminal (which prints data as text).
    render_terminal(comparison)
    if comparison.gate_failed:
        click.get_current_context().exit(EXIT_REGRESSION)


COMMANDS = [compare]
