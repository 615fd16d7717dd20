"""`bigbench history RUNS...|STORE`: per-cell series across commits, their change points, a
static dashboard (`-o DIR`) and a nightly gate (`--fail-on-regression --since COMMIT|DAYS`).

Exit 0; 1 when the gate found a regression in range beyond its threshold; 2 on bad usage or
when no run could be read; 3 (undecided) in gate mode when no series has enough history.
Analysing side only: never imports torch.
"""

from __future__ import annotations

from pathlib import Path

import click

from bigtrain.common.errors import BadInput
from bigtrain.common.exit_codes import EXIT_REGRESSION, EXIT_UNDECIDED
from bigtrain.common.terminal_text import inert


@click.command("history")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path),
                metavar="RUNS...|STORE")
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Write the static dashboard (index.html, one page per series) here.")
@click.option("--metric", "metric_names", multiple=True, metavar="NAME",
              help="Only these metrics (repeat the flag); default every comparable metric.")
@click.option("--fail-on-regression", is_flag=True,
              help="Gate mode: exit 1 when a change point in the --since range regressed by more "
                   "than the threshold.")
@click.option("--since", "since_text", default=None, metavar="COMMIT|DAYS",
              help="The gate's range: change points from this commit's run on, or of the last N "
                   "days (7 or 7d). Default: the whole history.")
@click.option("--threshold", "threshold_spec", default=None, metavar="PCT|METRIC=PCT,..",
              help="Smallest regression the gate fails on, as for compare. Default 5%.")
@click.option("--min-segment", type=int, default=None,
              help="Points needed each side of a shift (default 3; a series needs twice that).")
@click.option("--skip-busy", is_flag=True,
              help="Leave out of the series every cell run measured on a busy machine (its "
                   "record's host_load says other processes kept cores busy).")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None,
              help="Also append a Markdown summary here ($GITHUB_STEP_SUMMARY works).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None,
              help="Also write the whole analysis as JSON here.")
def history(paths: tuple[Path, ...], out_dir: Path | None, metric_names: tuple[str, ...],
            fail_on_regression: bool, since_text: str | None, threshold_spec: str | None,
            min_segment: int | None, skip_busy: bool, markdown_path: Path | None, json_path: Path | None) -> None:
    """Follow every cell's metrics across commits and find where they shifted.

    One series per machine x cell x metric (two machines never share a series), ordered by
    commit time (by start time for runs recorded without git, flagged); change points by
    ruptures' PELT on the noise-scaled log values, each with its commit range, its size with a
    99% interval, and regression or improvement by the metric's direction.
    """
    from bigtrain.compare.metrics import METRICS, METRICS_BY_NAME, metric_names_text
    from bigtrain.compare.outputs import write_gate_files
    from bigtrain.compare.thresholds import parse_thresholds
    from bigtrain.history.changepoints import DEFAULT_MIN_SEGMENT
    from bigtrain.history.gate import (analyse, gate_findings, ordered_for_overview, parse_since,
                                       render_markdown, to_json)
    from bigtrain.history.load import load_history
    from bigtrain.history.series import build_series

    unknown = [name for name in metric_names if name not in METRICS_BY_NAME]
    if unknown:
        raise BadInput(f"--metric {unknown[0]!r}: unknown; valid choices: {metric_names_text()}")
    if since_text is not None and not fail_on_regression:
        raise BadInput("--since sets the range of the gate: give it with --fail-on-regression")
    metrics = [METRICS_BY_NAME[name] for name in metric_names] or list(METRICS)
    thresholds = parse_thresholds(threshold_spec)
    since = parse_since(since_text) if since_text is not None else None
    runs, skipped = load_history(list(paths))
    for item in skipped:
        click.echo(inert(f"bigbench: warning: run left out: {item.message}"), err=True)
    if not runs:
        raise BadInput("history: no run could be read (see the warnings above)" if skipped
                       else "history: no run folders found")
    if since is not None:
        since = since.resolve(runs)
    placed_by_time = [r.run_id for r in runs if r.placed_by_time]
    if placed_by_time:
        click.echo(inert(f"{len(placed_by_time)} run(s) have no commit time and are placed by "
                         f"their start time: {', '.join(placed_by_time[:5])}"
                         f"{' ...' if len(placed_by_time) > 5 else ''}"))
    series = build_series(runs, metrics, skip_busy=skip_busy)
    analysed = analyse(series, min_segment=min_segment or DEFAULT_MIN_SEGMENT)
    findings = gate_findings(analysed, since, thresholds) if fail_on_regression else []
    write_gate_files(markdown_path=markdown_path,
                     markdown=lambda: render_markdown(analysed, skipped, findings, since),
                     json_path=json_path,
                     payload=lambda: to_json(analysed, skipped, findings, since))
    if out_dir is not None:
        from bigtrain.history.dashboard import write_dashboard

        index = write_dashboard(out_dir, analysed, runs, skipped)
        click.echo(inert(f"dashboard: {index}"))
    machines = sorted({r.machine for r in runs})
    decided = [a for a in analysed if a.detection.not_enough is None]
    click.echo(inert(f"{len(runs)} run(s) on {len(machines)} machine(s), {len(series)} series; "
                     f"{len(decided)} with enough history for detection"))
    for item in ordered_for_overview(analysed):
        for change in reversed(item.detection.change_points):
            before, after = item.commit_range(change)
            click.echo(inert(f"  {change.verdict:11} {change.change_pct:+6.1f}% "
                             f"[{change.low_pct:+.1f}%, {change.high_pct:+.1f}%] "
                             f"{item.series.metric.name} {item.series.cell_label} "
                             f"({before.commit_short}..{after.commit_short}) "
                             f"on {item.series.machine}"))
    if not decided:
        click.echo("not enough history: no series has enough points for detection; no verdict")
        if fail_on_regression:
            click.get_current_context().exit(EXIT_UNDECIDED)
        return
    if fail_on_regression:
        if findings:
            click.echo(f"gate: FAIL, {len(findings)} regression(s) beyond the threshold in range")
            click.get_current_context().exit(EXIT_REGRESSION)
        click.echo("gate: pass, no regression beyond the threshold in range")


COMMANDS = [history]
