"""The static history dashboard: `index.html` (every series, newest change points first) and one
page per series (trend, per-run spread, change points, the commits around them). Self-contained
HTML with inline SVG: no script, no network, servable by GitHub Pages. Every string that came
from a file (run ids, labels, machine names, versions) is escaped.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bigtrain.history.changepoints import REGRESSION
from bigtrain.history.gate import Analysed, ordered_for_overview
from bigtrain.history.load import HistoryRun, SkippedRun
from bigtrain.results.output_paths import checked_output, write_output
from bigtrain.results.run_ids import run_id_problem

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:0.9em}td,th{border-bottom:1px solid #ddd;padding:3px 8px;
text-align:left}.regression{color:#b00020;font-weight:600}.improvement{color:#1b7f3b;font-weight:600}
.muted{color:#777}code{font-size:0.9em}"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")


def _spread(samples: Sequence[float]) -> tuple[float, float]:
    if len(samples) < 2:
        return (samples[0], samples[0]) if samples else (float("nan"), float("nan"))
    low, high = np.percentile(np.asarray(samples, dtype=float), [10, 90])
    return float(low), float(high)


def trend_svg(item: Analysed, width: int = 900, height: int = 300) -> str:
    """The series as an inline SVG: each run's value, its p10-p90 spread, change points."""
    points = item.series.points
    spreads = [_spread(p.samples) for p in points]
    lows = [min(p.value, s[0]) for p, s in zip(points, spreads)]
    highs = [max(p.value, s[1]) for p, s in zip(points, spreads)]
    y_min, y_max = min(lows), max(highs)
    if y_max <= y_min:
        y_min, y_max = y_min * 0.99, y_max * 1.01 + 1e-12
    pad = 50
    n = len(points)

    def x(i: float) -> float:
        return pad + (width - 2 * pad) * (i / max(n - 1, 1))

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * ((v - y_min) / (y_max - y_min))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="trend">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
             f'<text x="{pad}" y="20" font-size="12">{_e(item.series.metric.label)} '
             f'({_e(item.series.metric.unit)}); bars: p10-p90 of the run\'s samples</text>',
             f'<text x="5" y="{y(y_max):.1f}" font-size="10">{y_max:.4g}</text>',
             f'<text x="5" y="{y(y_min):.1f}" font-size="10">{y_min:.4g}</text>']
    for change in item.detection.change_points:
        cx = (x(change.index - 1) + x(change.index)) / 2
        colour = "#b00020" if change.verdict == REGRESSION else "#1b7f3b"
        parts.append(f'<line x1="{cx:.1f}" y1="{pad - 10}" x2="{cx:.1f}" y2="{height - pad}" '
                     f'stroke="{colour}" stroke-dasharray="4 3"/>'
                     f'<text x="{cx + 3:.1f}" y="{pad - 12}" font-size="11" fill="{colour}">'
                     f'{change.change_pct:+.1f}%</text>')
    # Each segment's level (the geometric mean of its values) between the change points.
    edges = [0, *(c.index for c in item.detection.change_points), n]
    for start, end in zip(edges, edges[1:]):
        level = float(np.exp(np.mean(np.log([p.value for p in points[start:end]]))))
        parts.append(f'<line x1="{x(start):.1f}" y1="{y(level):.1f}" x2="{x(end - 1):.1f}" '
                     f'y2="{y(level):.1f}" stroke="#55a868" stroke-width="2"/>')
    path = " ".join(f"{x(i):.1f},{y(p.value):.1f}" for i, p in enumerate(points))
    parts.append(f'<polyline points="{path}" fill="none" stroke="#4c72b0"/>')
    for i, (p, (low, high)) in enumerate(zip(points, spreads)):
        parts.append(f'<line x1="{x(i):.1f}" y1="{y(low):.1f}" x2="{x(i):.1f}" y2="{y(high):.1f}" '
                     f'stroke="#999"/>')
        fill = ("white" if (p.run.dirty or p.run.placed_by_time)
                else "#dd8452" if p.busy else "#4c72b0")
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(p.value):.1f}" r="3.5" fill="{fill}" '
                     f'stroke="#4c72b0"><title>{_e(p.run.run_id)} {_e(p.run.commit_short)}: '
                     f'{p.value:.4g}</title></circle>')
    for index, text in item.series.software_changes:
        parts.append(f'<text x="{x(index):.1f}" y="{height - pad + 30}" font-size="10" '
                     f'fill="#a60">&#9650;<title>{_e(text)}</title></text>')
    parts.append(f'<text x="{pad}" y="{height - 10}" font-size="10">runs in commit order '
                 f'(green: level of each segment; hollow: dirty tree or placed by time; orange: measured on a busy machine; &#9650;: software version changed)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _run_link(run: HistoryRun, out_dir: Path) -> str:
    """The run's id linked to its manifest, and to its report where the dashboard folder holds
    one at reports/<run_id>/index.html (the CI recipe writes them there)."""
    target = run.run.path.resolve() / "manifest.json"
    rel = os.path.relpath(target, out_dir.resolve() / "series")
    link = f'<a href="{_e(Path(rel).as_posix())}">{_e(run.run_id)}</a>'
    # Only an id that keeps the run-id rule (no separators, no dots-only) names a folder below.
    report = out_dir / "reports" / run.run_id / "index.html"
    if run_id_problem(run.run_id) is None and report.is_file():
        link += f' <a href="../reports/{_e(run.run_id)}/index.html">report</a>'
    return link


def _flags(run: HistoryRun, *, busy: bool = False) -> str:
    flags = ["measured on a busy machine"] if busy else []
    if run.dirty:
        flags.append("dirty tree")
    if run.placed_by_time:
        flags.append("no commit time: placed by start time")
    return ", ".join(flags)


def series_page(item: Analysed, out_dir: Path) -> str:
    """One series' page."""
    s = item.series
    body = ['<p><a href="../index.html">&larr; all series</a></p>',
            f"<h1>{_e(s.cell_label)}: {_e(s.metric.name)}</h1>",
            f"<p>machine: {_e(s.machine)}<br>cell id: <code>{_e(s.cell_id)}</code><br>"
            f"{'lower' if not s.metric.higher_is_better else 'higher'} is better; noise "
            f"{'n/a' if item.detection.noise_pct is None else f'{item.detection.noise_pct:.2f}%'}"
            f"</p>"]
    if item.detection.not_enough:
        body.append(f"<p class=muted>{_e(item.detection.not_enough)}: no verdict.</p>")
    body.append(trend_svg(item))
    if item.detection.change_points:
        body.append("<h2>Change points</h2><table><tr><th>last old run</th><th>first new run"
                    "</th><th>change</th><th>99% interval</th><th>verdict</th><th>profiles</th></tr>")
        for change in reversed(item.detection.change_points):
            before, after = item.commit_range(change)
            profiled = all((r.run.path / "profiles").is_dir() for r in (before, after))
            diff = (f"<code>bigbench profile-diff {_e(before.run.path)} {_e(after.run.path)}</code>"
                    if profiled else "<span class=muted>not profiled on both sides</span>")
            body.append(f"<tr><td>{_e(before.commit_short)} ({_run_link(before, out_dir)})</td>"
                        f"<td>{_e(after.commit_short)} ({_run_link(after, out_dir)})</td>"
                        f"<td>{change.change_pct:+.2f}%</td><td>[{change.low_pct:+.2f}%, "
                        f"{change.high_pct:+.2f}%]</td><td class={change.verdict}>"
                        f"{change.verdict}</td><td>{diff}</td></tr>")
        body.append("</table>")
    if s.software_changes:
        body.append("<h2>Software changes</h2><ul>")
        body += [f"<li>at {_e(s.points[i].run.commit_short)}: {_e(text)}</li>"
                 for i, text in s.software_changes]
        body.append("</ul>")
    body.append("<h2>Runs</h2><table><tr><th>#</th><th>commit</th><th>when</th><th>run</th>"
                f"<th>value ({_e(s.metric.unit)})</th><th>p10-p90</th><th>samples</th>"
                "<th>flags</th></tr>")
    starts = {c.index for c in item.detection.change_points}
    for i, p in enumerate(s.points):
        low, high = _spread(p.samples)
        mark = " class=regression" if i in starts else ""
        body.append(f"<tr{mark}><td>{i}</td><td>{_e(p.run.commit_short)}</td>"
                    f"<td>{_e(p.run.when.isoformat(timespec='minutes'))}</td>"
                    f"<td>{_run_link(p.run, out_dir)}</td><td>{p.value:.5g}</td>"
                    f"<td>{low:.4g} - {high:.4g}</td><td>{len(p.samples)}</td>"
                    f"<td>{_e(_flags(p.run, busy=p.busy))}</td></tr>")
    body.append("</table>")
    return _page(f"{s.cell_label} {s.metric.name}", "".join(body))


def index_page(analysed: Sequence[Analysed], runs: Sequence[HistoryRun],
               skipped: Sequence[SkippedRun]) -> str:
    """The overview: every series, newest change points first."""
    body = ["<h1>bigbench history</h1>",
            f"<p>{len(runs)} runs, {len(analysed)} series, machines: "
            f"{_e('; '.join(sorted({r.machine for r in runs})))}</p>"]
    if skipped:
        body.append("<h2>Runs left out</h2><ul>")
        body += [f"<li>{_e(s.message)}</li>" for s in skipped]
        body.append("</ul>")
    body.append("<table><tr><th>cell</th><th>metric</th><th>machine</th><th>points</th>"
                "<th>latest change</th><th>commits</th><th>verdict</th></tr>")
    for item in ordered_for_overview(analysed):
        s, latest = item.series, item.latest_change
        if latest is not None:
            before, after = item.commit_range(latest)
            change = (f"<td>{latest.change_pct:+.1f}% [{latest.low_pct:+.1f}%, "
                      f"{latest.high_pct:+.1f}%]</td><td>{_e(before.commit_short)}.."
                      f"{_e(after.commit_short)}</td><td class={latest.verdict}>"
                      f"{latest.verdict}</td>")
        else:
            text = item.detection.not_enough or "no change point"
            change = f"<td colspan=3 class=muted>{_e(text)}</td>"
        body.append(f'<tr><td><a href="series/{s.key}.html">{_e(s.cell_label)}</a></td>'
                    f"<td>{_e(s.metric.name)}</td><td>{_e(s.machine)}</td>"
                    f"<td>{len(s.points)}</td>{change}</tr>")
    body.append("</table>")
    return _page("bigbench history", "".join(body))


def write_dashboard(out_dir: Path, analysed: Sequence[Analysed], runs: Sequence[HistoryRun],
                    skipped: Sequence[SkippedRun]) -> Path:
    """Write the dashboard under `out_dir`; returns its index.html."""
    out_dir = Path(out_dir)
    index = checked_output(out_dir / "index.html", what="-o")
    for item in analysed:
        write_output(out_dir / "series" / f"{item.series.key}.html", series_page(item, out_dir),
                     what="-o", make_parents=True)
    write_output(index, index_page(analysed, runs, skipped), what="-o", make_parents=True)
    return index
