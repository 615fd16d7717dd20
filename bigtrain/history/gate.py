"""Analyse every series of a history, and the nightly gate over it: `--fail-on-regression
--since COMMIT|DAYS` fails when a change point in that range regressed beyond the threshold.
Markdown and JSON summaries in the form `compare` writes (escaped: every label is data)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from bigtrain.common.errors import BadInput
from bigtrain.common.markdown_escape import escape_markdown
from bigtrain.history.changepoints import REGRESSION, ChangePoint, Detection, detect
from bigtrain.history.load import HistoryRun, SkippedRun
from bigtrain.history.series import Series


@dataclass(frozen=True, kw_only=True)
class Analysed:
    """A series with its change points."""

    series: Series
    detection: Detection

    def commit_range(self, change: ChangePoint) -> tuple[HistoryRun, HistoryRun]:
        """(the last run at the old level, the first at the new): the shift lies in between."""
        points = self.series.points
        return points[change.index - 1].run, points[change.index].run

    @property
    def latest_change(self) -> ChangePoint | None:
        """The newest change point, if any."""
        return self.detection.change_points[-1] if self.detection.change_points else None


@dataclass(frozen=True, kw_only=True)
class Since:
    """Where gate mode starts looking: a commit (its first run and later) or a time."""

    text: str
    commit: str | None = None
    after: datetime | None = None

    def covers(self, series: Series, change: ChangePoint) -> bool:
        """Whether the change point's new level starts inside the range."""
        if self.after is not None:
            return series.points[change.index].run.when >= self.after
        starts = [i for i, p in enumerate(series.points)
                  if p.run.commit and p.run.commit.startswith(str(self.commit))]
        if starts:
            return change.index >= starts[0]
        # The series never ran that commit: the range starts at its first run placed later.
        first = self.first_run_after
        return first is not None and series.points[change.index].run.when >= first

    #: For a commit: the time of its first run anywhere in the history (set by `resolve`).
    first_run_after: datetime | None = None

    def resolve(self, runs: Sequence[HistoryRun]) -> Since:
        """Check a commit range against the runs: BadInput when no run has that commit."""
        if self.commit is None:
            return self
        hits = [run for run in runs if run.commit and run.commit.startswith(self.commit)]
        if not hits:
            known = ", ".join(dict.fromkeys(r.commit_short for r in runs if r.commit)) or "none"
            raise BadInput(f"--since {self.text!r}: no run in the history has that commit; "
                           f"commits: {known}")
        return Since(text=self.text, commit=self.commit, first_run_after=min(r.when for r in hits))


#: Days: up to 4 digits with a `d` (`7d`, `1.5d`, `365d`) or up to 3 bare digits (`7`); longer
#: all-hex text is a commit prefix.
_DAYS = re.compile(r"^(\d{1,4}(?:\.\d+)?)d$|^(\d{1,3}(?:\.\d+)?)$")
_HEX = re.compile(r"^[0-9a-fA-F]{4,40}$")


def parse_since(text: str, *, now: datetime | None = None) -> Since:
    """`--since 7` / `7d` (days back from now) or a commit (4 to 40 hex digits)."""
    days = _DAYS.match(text.strip())
    if days:
        now = now or datetime.now(timezone.utc)
        count = float(days.group(1) or days.group(2))
        return Since(text=text, after=now - timedelta(days=count))
    if _HEX.match(text.strip()):
        return Since(text=text, commit=text.strip().lower())
    raise BadInput(f"--since {text!r}: give a number of days (e.g. 7 or 7d) or a commit "
                   f"(4 to 40 hex digits)")


def analyse(series: Sequence[Series], **detect_options: Any) -> list[Analysed]:
    """Run the detector on every series."""
    return [Analysed(series=s, detection=detect(s.values, [p.samples for p in s.points],
                                                higher_is_better=s.metric.higher_is_better,
                                                **detect_options))
            for s in series]


@dataclass(frozen=True, kw_only=True)
class GateFinding:
    """A change point inside the gate's range that regressed beyond its threshold."""

    analysed: Analysed
    change: ChangePoint
    threshold_pct: float


def gate_findings(analysed: Sequence[Analysed], since: Since | None,
                  thresholds_pct: Mapping[str, float]) -> list[GateFinding]:
    """The regressions the gate fails on: in range, estimate beyond the metric's threshold."""
    out = []
    for item in analysed:
        threshold = thresholds_pct.get(item.series.metric.name, 5.0)
        for change in item.detection.change_points:
            if change.verdict != REGRESSION or change.worse_pct <= threshold:
                continue
            if since is None or since.covers(item.series, change):
                out.append(GateFinding(analysed=item, change=change, threshold_pct=threshold))
    return out


def ordered_for_overview(analysed: Sequence[Analysed]) -> list[Analysed]:
    """Series with the newest change points first (regressions before improvements), then the
    ones without, then those with not enough history."""
    def key(item: Analysed) -> tuple:
        latest = item.latest_change
        if latest is None:
            return (1 if item.detection.not_enough is None else 2, 0.0, item.series.cell_label)
        when = item.series.points[latest.index].run.when.timestamp()
        return (0, -when, 0 if latest.verdict == REGRESSION else 1, item.series.cell_label)
    return sorted(analysed, key=key)


def _range_text(item: Analysed, change: ChangePoint) -> str:
    before, after = item.commit_range(change)
    return f"{before.commit_short}..{after.commit_short}"


def to_json(analysed: Sequence[Analysed], skipped: Sequence[SkippedRun],
            findings: Sequence[GateFinding], since: Since | None) -> dict[str, Any]:
    """The whole history analysis as JSON-ready data."""
    def finite(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    def run_json(run: HistoryRun) -> dict[str, Any]:
        return {"run_id": run.run_id, "commit": run.commit, "dirty": run.dirty,
                "when": run.when.isoformat(), "placed_by_time": run.placed_by_time}

    series_out = []
    for item in analysed:
        s = item.series
        changes = []
        for change in item.detection.change_points:
            before, after = item.commit_range(change)
            changes.append({"index": change.index, "before": run_json(before),
                            "after": run_json(after), "change_pct": finite(change.change_pct),
                            "low_pct": finite(change.low_pct), "high_pct": finite(change.high_pct),
                            "verdict": change.verdict})
        series_out.append({
            "key": s.key, "machine": s.machine, "cell_id": s.cell_id, "cell": s.cell_label,
            "metric": s.metric.name, "unit": s.metric.unit,
            "higher_is_better": s.metric.higher_is_better,
            "points": [{**run_json(p.run), "value": p.value, "samples": len(p.samples),
                        "repeats": p.repeats, "busy": p.busy} for p in s.points],
            "software_changes": [{"index": i, "change": text} for i, text in s.software_changes],
            "noise_pct": finite(item.detection.noise_pct),
            "not_enough_history": item.detection.not_enough,
            "change_points": changes,
        })
    return {
        "since": since.text if since else None,
        "gate_failed": bool(findings),
        "regressions_in_range": [{"key": f.analysed.series.key, "metric": f.analysed.series.metric.name,
                                  "cell": f.analysed.series.cell_label,
                                  "commits": _range_text(f.analysed, f.change),
                                  "worse_pct": finite(f.change.worse_pct),
                                  "threshold_pct": f.threshold_pct} for f in findings],
        "skipped_runs": [{"path": str(s.path), "message": s.message} for s in skipped],
        "series": series_out,
    }


def render_markdown(analysed: Sequence[Analysed], skipped: Sequence[SkippedRun],
                    findings: Sequence[GateFinding], since: Since | None) -> str:
    """A Markdown summary: the gate's verdict, then every change point, newest first."""
    lines = ["## bigbench history", ""]
    if since is not None:
        verdict = (f"**FAIL**: {len(findings)} regression(s) since {escape_markdown(since.text)}"
                   if findings else f"**pass**: no regression beyond its threshold since "
                                    f"{escape_markdown(since.text)}")
        lines += [verdict, ""]
    with_changes = [a for a in ordered_for_overview(analysed) if a.detection.change_points]
    short = sum(1 for a in analysed if a.detection.not_enough)
    lines.append(f"{len(analysed)} series, {len(with_changes)} with change points, {short} with "
                 f"not enough history.")
    if with_changes:
        lines += ["", "| cell | metric | machine | commits | change | interval | verdict |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for item in with_changes:
            for change in reversed(item.detection.change_points):
                lines.append(
                    f"| {escape_markdown(item.series.cell_label)} | {item.series.metric.name} | "
                    f"{escape_markdown(item.series.machine)} | "
                    f"{escape_markdown(_range_text(item, change))} | "
                    f"{change.change_pct:+.1f}% | [{change.low_pct:+.1f}%, {change.high_pct:+.1f}%] | "
                    f"{change.verdict} |")
    if skipped:
        lines += ["", "Runs left out:", ""]
        lines += [f"- {escape_markdown(s.message)}" for s in skipped]
    return "\n".join(lines) + "\n"
