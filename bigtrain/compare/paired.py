"""The gate on paired rounds (`bigbench ab`): decide every cell and metric from per-round ratios.

A round runs every cell once on each side, close together in time; `compare_paired` turns the
rounds so far into the same `Comparison` that `bigbench compare` makes (same renderers, same exit
codes), with per cell the rounds used, per metric the smallest change the rounds could have shown
(`Verdict.mde_pct`), and the verdict `undecided` while the noise still allows either answer.
`all_decided` is the runner's stopping rule after each round.

The statistics (bigtrain/compare/stats.py, "paired rounds"): per round, the ratio candidate/baseline of a
metric (e.g. the round's median step time) -- the drift a round shares cancels; a paired t interval
of the mean log ratio; decided when the interval lies beyond the threshold band (regressed or
improved) or inside it (unchanged); Bonferroni over the cell x metric family (a metric that is an
exact function of another, throughput of step time, is one test with it) and alpha spent over
the looks (one look after each round), so that, with nothing changed, at most `alpha` of whole gate
runs show any alarm. A decision, once reached at a look, stands; later rounds go to the cells still
undecided. Rounds where either side is not ok are left out of the ratios; a cell failed in the
candidate where the baseline was ok fails the gate as in `compare`.

Analysing side of the wall: never imports torch, pynvml or pandas.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bigtrain.compare.gate import check_runs, group_repeats, side_summary, status_comparison
from bigtrain.compare.metrics import METRICS, METRICS_BY_NAME, Metric, metric_names_text
from bigtrain.compare.result import CellComparison, Comparison, MetricComparison
from bigtrain.compare.thresholds import DEFAULT_THRESHOLD_PCT, parse_thresholds
from bigtrain.common.errors import BadInput
from bigtrain.results.schema import STATUS_OK, CellRecord
from bigtrain.results.store import LoadedRun
from bigtrain.compare.stats import (
    CENTER_GEOMEAN,
    DEFAULT_ALPHA,
    IMPROVED,
    METHOD_PAIRED,
    MIN_PAIRED_ROUNDS,
    REGRESSED,
    UNCHANGED,
    UNDECIDED,
    Verdict,
    band_outcome,
    detectable_change_pct,
    geometric_mean,
    look_level,
    paired_log_ratio_interval,
    paired_look_interval,
    safe_exp,
)

#: What `bigbench compare` makes and `compare_paired` extends (one result type for both).
CompareResult = Comparison


@dataclass(frozen=True, kw_only=True)
class PairedRound:
    """One round of one cell: each side ran the cell once, in the same round.

    A side is None where it has no record in that round (the cell is missing on that side).
    """

    round_index: int
    baseline: CellRecord | None
    candidate: CellRecord | None


def compare_paired(
    rounds_by_cell: Mapping[str, Sequence[PairedRound]],
    *,
    thresholds: Mapping[str, float] | str | None = None,
    alpha: float = DEFAULT_ALPHA,
    max_rounds: int | None = None,
    metrics: Sequence[str | Metric] | None = None,
    final: bool = False,
    baseline_run: str = "baseline",
    candidate_run: str = "candidate",
    baseline_path: str | None = None,
    candidate_path: str | None = None,
    hardware_differences: Sequence[str] = (),
    warnings: Sequence[str] = (),
) -> CompareResult:
    """Decide every cell from its paired rounds so far (see the module docstring).

    `thresholds`: percent per metric name (or a `--threshold` spec); `alpha`: the chance, with
    nothing changed, that a whole gate run raises any alarm; `max_rounds`: the planned cap on the
    rounds (alpha is spread over the looks up to it, and rounds beyond it are ignored), or None
    when the rounds are open-ended (a time budget): alpha is then spent as alpha*3/(k(k+1)) at
    look k; `metrics`: the metric names (or Metric objects) to gate, default all; `final`: no
    round follows these (a time budget ran out before max_rounds): the last look gets the alpha
    kept for the end (reaching max_rounds is final by itself).
    """
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha {alpha!r}: must be between 0 and 1 (exclusive), e.g. 0.01")
    if max_rounds is not None and max_rounds < MIN_PAIRED_ROUNDS:
        raise BadInput(f"--rounds {max_rounds!r}: paired rounds decide nothing before "
                       f"{MIN_PAIRED_ROUNDS} rounds; give {MIN_PAIRED_ROUNDS} or more")
    threshold_pct = (dict(thresholds) if isinstance(thresholds, Mapping)
                     else parse_thresholds(thresholds))
    chosen = _chosen_metrics(metrics)

    cells: dict[str, list[PairedRound]] = {}
    for cell_id, rounds in rounds_by_cell.items():
        ordered = sorted(rounds, key=lambda r: r.round_index)
        cells[cell_id] = ordered[:max_rounds] if max_rounds is not None else ordered

    settled: dict[str, CellComparison] = {}
    tests: dict[str, list[tuple[Metric, list[tuple[int, float, float]]]]] = {}
    for cell_id, rounds in cells.items():
        baseline = [r.baseline for r in rounds if r.baseline is not None]
        candidate = [r.candidate for r in rounds if r.candidate is not None]
        if not baseline and not candidate:
            continue
        axes = (candidate or baseline)[0].axes()
        status = _status_by_round(cell_id, axes, rounds, baseline, candidate)
        if status is not None:
            settled[cell_id] = replace(status, rounds=len(rounds))
            continue
        tests[cell_id] = [(metric, pairs) for metric in chosen
                          if (pairs := _pairs(metric, rounds))]
    family_size = max(1, sum(_distinct_tests(t) for t in tests.values()))

    decided_cells = []
    for cell_id, rounds in cells.items():
        if cell_id in settled:
            decided_cells.append(settled[cell_id])
            continue
        if cell_id not in tests:
            continue
        baseline = [r.baseline for r in rounds if r.baseline is not None]
        candidate = [r.candidate for r in rounds if r.candidate is not None]
        verdicts = [
            MetricComparison(metric, _decide_metric(
                pairs, looks=len(rounds), metric=metric,
                threshold_pct=threshold_pct.get(metric.name, DEFAULT_THRESHOLD_PCT),
                alpha=alpha, family_size=family_size, max_rounds=max_rounds,
                last_look=len(rounds) if final else None))
            for metric, pairs in tests[cell_id]
        ]
        outcomes = {m.outcome for m in verdicts}
        outcome = next((o for o in (REGRESSED, UNDECIDED, IMPROVED) if o in outcomes), UNCHANGED)
        dropped = len(rounds) - len({i for _, p in tests[cell_id] for i, _, _ in p})
        note = None
        if not verdicts:
            note = "no metric present in both runs"
        elif dropped:
            note = f"{dropped} of {len(rounds)} rounds left out (a side not ok or absent)"
        decided_cells.append(CellComparison(
            cell_id, (candidate or baseline)[0].axes(), outcome, tuple(verdicts), note,
            rounds=max((m.verdict.rounds or 0 for m in verdicts), default=len(rounds)),
            **side_summary(baseline, candidate),
        ))
    return Comparison.of(
        decided_cells, baseline_run=baseline_run, candidate_run=candidate_run,
        baseline_path=baseline_path, candidate_path=candidate_path, thresholds_pct=threshold_pct,
        alpha=alpha, hardware_differences=hardware_differences, warnings=warnings,
        paired=True,
        rounds=max((len(r) for r in cells.values()), default=0),
        max_rounds=max_rounds,
        family_size=family_size,
    )


def rounds_from_records(
    baseline: Sequence[CellRecord], candidate: Sequence[CellRecord]
) -> dict[str, list[PairedRound]]:
    """Paired rounds from two sides' records: records of a cell with the same `repeat` number were
    measured in the same round (how `bigbench ab` writes its two run folders)."""
    base_cells, cand_cells = group_repeats(baseline), group_repeats(candidate)
    rounds: dict[str, list[PairedRound]] = {}
    for cell_id in sorted(set(base_cells) | set(cand_cells)):
        base = {r.repeat: r for r in base_cells.get(cell_id, [])}
        cand = {r.repeat: r for r in cand_cells.get(cell_id, [])}
        rounds[cell_id] = [PairedRound(round_index=i, baseline=base.get(i), candidate=cand.get(i))
                           for i in sorted(set(base) | set(cand))]
    return rounds


def compare_paired_runs(
    baseline: Sequence[LoadedRun],
    candidate: Sequence[LoadedRun],
    *,
    allow_different_hardware: bool = False,
    **options: Any,
) -> CompareResult:
    """`compare --paired`: run folders of the two sides of `bigbench ab`, judged as paired rounds.

    Folder k of the baseline pairs with folder k of the candidate (their rounds follow the
    previous pair's); options as compare_paired.
    """
    if len(baseline) != len(candidate):
        raise BadInput(f"--paired pairs baseline and candidate folders one to one: got "
                       f"{len(baseline)} baseline and {len(candidate)} candidate folders")
    differences, warnings = check_runs(baseline, candidate,
                                       allow_different_hardware=allow_different_hardware)
    rounds: dict[str, list[PairedRound]] = {}
    offset = 0
    for base_run, cand_run in zip(baseline, candidate):
        pair = rounds_from_records(base_run.records, cand_run.records)
        width = 1 + max((r.round_index for rs in pair.values() for r in rs), default=-1)
        for cell_id, cell_rounds in pair.items():
            rounds.setdefault(cell_id, []).extend(
                replace(r, round_index=offset + r.round_index) for r in cell_rounds)
        offset += width
    if baseline and candidate:
        base_cells = {r.cell_id for run in baseline for r in run.records}
        cand_cells = {r.cell_id for run in candidate for r in run.records}
        if base_cells and cand_cells and not base_cells & cand_cells:
            raise BadInput(f"no cell of {candidate[0].path} matches a cell of {baseline[0].path}: "
                           f"were they swept with different presets or devices?")
    return compare_paired(
        rounds,
        baseline_run=" + ".join(r.manifest.run_id for r in baseline),
        candidate_run=" + ".join(r.manifest.run_id for r in candidate),
        baseline_path=" + ".join(str(r.path) for r in baseline),
        candidate_path=" + ".join(str(r.path) for r in candidate),
        hardware_differences=differences,
        warnings=warnings,
        **options,
    )


def all_decided(result: CompareResult) -> bool:
    """The runner's stopping rule after each round: True when no cell is undecided."""
    return result.all_decided


def _status_by_round(
    cell_id: str,
    axes: Mapping[str, object],
    rounds: Sequence[PairedRound],
    baseline: Sequence[CellRecord],
    candidate: Sequence[CellRecord],
) -> CellComparison | None:
    """The cell's verdict where statuses settle it, judged round by round, else None.

    A candidate not ok in a round whose baseline was ok fails the cell (or regresses it, for a
    target not reached); a round where the baseline was not ok either (a box-wide hiccup) is only
    left out of the ratios. Missing sides and cells never ok together go as in `compare`.
    """
    summary = side_summary(baseline, candidate)
    if not baseline or not candidate:
        return status_comparison(cell_id, axes, baseline, candidate, summary)
    both = [(r.baseline, r.candidate) for r in rounds
            if r.baseline is not None and r.candidate is not None]
    broken = [(b, c) for b, c in both if b.status == STATUS_OK and c.status != STATUS_OK]
    if broken:
        return status_comparison(cell_id, axes, [b for b, _ in broken], [c for _, c in broken],
                                 summary)
    if not any(b.status == STATUS_OK and c.status == STATUS_OK for b, c in both):
        return status_comparison(cell_id, axes, baseline, candidate, summary)
    return None


def _chosen_metrics(metrics: Sequence[str | Metric] | None) -> tuple[Metric, ...]:
    if metrics is None:
        return METRICS
    chosen = []
    for metric in metrics:
        if isinstance(metric, Metric):
            chosen.append(metric)
        elif metric in METRICS_BY_NAME:
            chosen.append(METRICS_BY_NAME[metric])
        else:
            raise BadInput(f"unknown metric {metric!r}; valid metrics: {metric_names_text()}")
    return tuple(chosen)


def _distinct_tests(tests: Sequence[tuple[Metric, Sequence[tuple[int, float, float]]]]) -> int:
    """How many different tests a cell's metrics make: a metric whose per-round log ratios are
    another's, or their negatives, is the same test (throughput is items per step over the median
    step time), and its alarms are that test's, so it does not widen the family."""
    seen: set[tuple[tuple[int, float], ...]] = set()
    for _, pairs in tests:
        logs = tuple((look, round(math.log(c / b), 9)) for look, b, c in pairs)
        mirrored = tuple((look, -value + 0.0) for look, value in logs)
        if logs not in seen and mirrored not in seen:
            seen.add(logs)
    return len(seen)


def _pairs(metric: Metric, rounds: Sequence[PairedRound]) -> list[tuple[int, float, float]]:
    """(look, baseline, candidate) for the rounds where both sides are ok with a positive value.

    `look` is the round's position (1-based) in the cell's rounds: the look at which it is known.
    """
    pairs = []
    for look, paired_round in enumerate(rounds, start=1):
        base, cand = paired_round.baseline, paired_round.candidate
        if base is None or cand is None or base.status != STATUS_OK or cand.status != STATUS_OK:
            continue
        b, c = metric.value(base), metric.value(cand)
        if b is None or c is None or not (math.isfinite(b) and math.isfinite(c)):
            continue
        if b <= 0 or c <= 0:
            continue  # a ratio needs positive values (a zero memory peak on a CPU, say)
        pairs.append((look, float(b), float(c)))
    return pairs


def _decide_metric(
    pairs: Sequence[tuple[int, float, float]],
    *,
    looks: int,
    metric: Metric,
    threshold_pct: float,
    alpha: float,
    family_size: int,
    max_rounds: int | None,
    last_look: int | None,
) -> Verdict:
    """The first look whose interval decides the metric, else the last look's interval."""
    logs_by_look: dict[int, list[float]] = {}
    for look, b, c in pairs:
        logs_by_look.setdefault(look, []).append(math.log(c) - math.log(b))
    # running sums of the log ratios, shifted by the first (so equal ratios sum to exactly 0)
    shift = math.log(pairs[0][2]) - math.log(pairs[0][1])
    n, total, squares = 0, 0.0, 0.0
    chosen: tuple[str, int, float] | None = None  # outcome, look, level
    for look in range(1, looks + 1):
        for value in logs_by_look.get(look, ()):
            n, total, squares = n + 1, total + (value - shift), squares + (value - shift) ** 2
        level = look_level(alpha, look, family_size=family_size, max_rounds=max_rounds,
                           last_look=last_look)
        if level <= 0 or n == 0:
            continue
        mean, low, high = paired_look_interval(n, total, squares, level=level)
        outcome = band_outcome(safe_exp(low + shift), safe_exp(high + shift),
                               threshold_pct=threshold_pct,
                               higher_is_better=metric.higher_is_better)
        chosen = (outcome, look, level)
        if outcome != UNDECIDED:
            break
    base_all = [b for _, b, _ in pairs]
    cand_all = [c for _, _, c in pairs]
    if chosen is None:
        # too few rounds for any look: the point estimate only, undecided
        interval = paired_log_ratio_interval(base_all, cand_all, level=alpha / family_size)
        interval = replace(interval, ratio_low=0.0, ratio_high=math.inf)
        outcome, look = UNDECIDED, looks
    else:
        outcome, look, level = chosen
        used = [(b, c) for at, b, c in pairs if at <= look]
        interval = paired_log_ratio_interval([b for b, _ in used], [c for _, c in used],
                                             level=level)
    used = [(b, c) for at, b, c in pairs if at <= look]
    base_used = [b for b, _ in used]
    cand_used = [c for _, c in used]
    ratio = interval.ratio
    return Verdict(
        outcome=outcome,
        ratio=ratio,
        change_pct=(ratio - 1) * 100 if math.isfinite(ratio) else math.inf,
        threshold_pct=threshold_pct,
        higher_is_better=metric.higher_is_better,
        method=METHOD_PAIRED,
        alpha=interval.level,
        p_value=interval.p_value,
        ratio_low=interval.ratio_low,
        ratio_high=interval.ratio_high,
        baseline_median=statistics.median(base_used),
        candidate_median=statistics.median(cand_used),
        baseline_n=len(used),
        candidate_n=len(used),
        center=CENTER_GEOMEAN,
        baseline_value=geometric_mean(base_used),
        candidate_value=geometric_mean(cand_used),
        rounds=look,
        mde_pct=detectable_change_pct(interval, threshold_pct=threshold_pct),
    )
