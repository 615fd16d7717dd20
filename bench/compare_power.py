"""How often does the `bigbench ab` gate cry wolf, and what slowdown does it catch in a budget?

    .venv/bin/python bench/compare_power.py results/aa1 results/aa2 ...   # ab A/A runs
    .venv/bin/python bench/compare_power.py --results results --budget-s 600 --json power.json

Input: real `bigbench ab` A/A runs (neither side's Python or environment changed), each the pair of
run folders `<id>-baseline` and `<id>-candidate` whose records carry `repeat` = the round. Name a
run by its prefix (`results/<id>`) or either folder, or give `--results DIR` to take every pair in
DIR. Their rounds, pooled, are the population; nothing here measures anything.

Rounds are the unit of resampling: a trial draws rounds from the pool (distinct rounds, without
replacement, while the pool has enough; with replacement beyond, flagged) and keeps each round whole (both sides of every cell, as measured together), so the drift a round shares
and the pairing the gate relies on stay as they were. Under A/A the two sides are exchangeable, so
each drawn round's sides are swapped with probability 1/2. Each trial runs the gate exactly as
`ab` does after its last round (`compare_paired`, max_rounds = the rounds drawn, every look).

- (a) A/A: the share of whole gate runs (every cell and metric, every look) that raise any alarm
  (a metric regressed or improved), and that fail the gate, with 95% Wilson intervals;
- (b) detection: the same trials with the candidate's optimizer step made 10% and 5% slower,
  at the rounds that fit in --budget-s (the round duration measured from the runs' manifests);
- (c) the trade-off curve: alarms and detection against the rounds (and the seconds they take).

The injection: a round's candidate record gets its optimizer phase times scaled by the factor
(`phase_time_s.optimizer` and each step's `phase_times_s["optimizer"]`); the phases of a step run
one after the other, so each step time grows by (factor - 1) x that step's optimizer time (the
median optimizer phase where per-step phases are missing), the step-time summary is recomputed
from the new steps, and throughput is items per step over the new median step; memory is left as
measured. So `optimizer_time` moves by the full factor and `step_time`/`items_per_s` by the
optimizer's share of the step. A trial catches the slowdown when the gate fails; the share of
(trial, cell) pairs decided `regressed` is printed too.

Caveats: the trials share the pool's rounds, so they are not independent (a pool of a few rounds
gives rates with wider real uncertainty than their Wilson intervals); with fewer distinct rounds
than a trial draws, rounds repeat and the intervals are narrower than fresh rounds would give (the
report flags those rows).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bigtrain.common.errors import BadInput  # noqa: E402
from bigtrain.compare.paired import PairedRound, compare_paired, rounds_from_records  # noqa: E402
from bigtrain.compare.stats import DEFAULT_ALPHA  # noqa: E402
from bigtrain.compare.stats import wilson_interval as wilson  # noqa: E402
from bigtrain.compare.thresholds import parse_thresholds  # noqa: E402
from bigtrain.results.schema import CellRecord, StepTimeStats  # noqa: E402
from bigtrain.results.store import LoadedRun, load_run  # noqa: E402

SLOWDOWNS = (1.10, 1.05)
DEFAULT_CURVE_ROUNDS = (5, 10, 15, 20, 30, 40, 60)
DEFAULT_THRESHOLD = "2%"


# -- rates -----------------------------------------------------------------------------------------
def rate(hits: int, n: int) -> dict:
    """A rate with its trial count and 95% Wilson interval."""
    low, high = wilson(hits, n)
    return {"hits": hits, "trials": n, "rate": hits / n if n else None, "wilson95": [low, high]}


def fmt_rate(r: Mapping) -> str:
    """`3/200 = 1.5% [0.5-4.3]`."""
    if not r["trials"]:
        return "no trials"
    low, high = r["wilson95"]
    return f"{r['hits']}/{r['trials']} = {100 * r['rate']:.1f}% [{100 * low:.1f}-{100 * high:.1f}]"


# -- the pool of rounds ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class AbRun:
    """One `bigbench ab` run: its two folders, loaded."""

    name: str
    baseline: LoadedRun
    candidate: LoadedRun


def find_ab_runs(names: Sequence[str], results_dir: Path | None) -> list[AbRun]:
    """The ab runs named (prefix or either folder) and every pair in `results_dir`."""
    prefixes: list[Path] = []
    for name in names:
        path = Path(name)
        for suffix in ("-baseline", "-candidate"):
            if path.name.endswith(suffix):
                path = path.with_name(path.name[: -len(suffix)])
        prefixes.append(path)
    if results_dir is not None:
        if not results_dir.is_dir():
            raise BadInput(f"--results {results_dir}: not a folder")
        prefixes += sorted(p.with_name(p.name[: -len("-baseline")])
                           for p in results_dir.glob("*-baseline") if p.is_dir())
    runs = []
    for prefix in dict.fromkeys(prefixes):
        base, cand = (prefix.with_name(prefix.name + s) for s in ("-baseline", "-candidate"))
        missing = [str(p) for p in (base, cand) if not p.is_dir()]
        if missing:
            raise BadInput(f"ab run {prefix}: no folder {', '.join(missing)} (an ab run is the "
                           f"pair <id>-baseline, <id>-candidate)")
        runs.append(AbRun(name=prefix.name, baseline=load_run(base), candidate=load_run(cand)))
    if not runs:
        raise BadInput("no ab run given: name them (results/<id>) or pass --results DIR")
    return runs


def pool_rounds(runs: Sequence[AbRun]) -> list[dict[str, PairedRound]]:
    """Every round of every run, whole: cell_id -> that round's pair."""
    pool = []
    for run in runs:
        by_cell = rounds_from_records(run.baseline.records, run.candidate.records)
        indexes = sorted({r.round_index for rounds in by_cell.values() for r in rounds})
        for index in indexes:
            pool.append({cell: r for cell, rounds in by_cell.items() for r in rounds
                         if r.round_index == index})
    return pool


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def round_seconds(run: AbRun) -> float | None:
    """Wall seconds per round of one ab run: both folders' first start to last end, over rounds.

    From the manifests where they closed; else from the records' own start and end times.
    """
    rounds = len({r.repeat for r in (*run.baseline.records, *run.candidate.records)})
    if not rounds:
        return None
    manifests = (run.baseline.manifest, run.candidate.manifest)
    starts = [_parse_time(m.started_at) for m in manifests]
    ends = [_parse_time(m.ended_at) for m in manifests]
    if all(starts) and all(ends):
        return (max(ends) - min(starts)).total_seconds() / rounds  # type: ignore[type-var]
    records = (*run.baseline.records, *run.candidate.records)
    record_starts = [t for t in (_parse_time(r.started_at) for r in records) if t]
    record_ends = [t for t in (_parse_time(r.ended_at) for r in records) if t]
    if record_starts and record_ends:
        return (max(record_ends) - min(record_starts)).total_seconds() / rounds
    return None


# -- the injection ---------------------------------------------------------------------------------
def slow_optimizer(record: CellRecord | None, factor: float) -> CellRecord | None:
    """`record` as if its optimizer step were `factor` times slower (see the module docstring)."""
    if record is None or record.status != "ok" or record.phase_time_s is None or factor == 1:
        return record
    optimizer_median = record.phase_time_s.optimizer
    per_step = list((record.phase_times_s or {}).get("optimizer", ()))
    if len(per_step) != len(record.step_times_s):
        per_step = [optimizer_median] * len(record.step_times_s)
    steps = tuple(t + (factor - 1) * o for t, o in zip(record.step_times_s, per_step))
    if steps:
        summary = StepTimeStats.from_samples(steps)
    else:  # no per-step samples: shift the summary by the median optimizer time
        extra = (factor - 1) * optimizer_median
        old = record.step_time_s
        summary = replace(old, median=old.median + extra, mean=old.mean + extra,
                          p10=old.p10 + extra, p90=old.p90 + extra)
    phases = dict(record.phase_times_s or {})
    if "optimizer" in phases:
        phases["optimizer"] = [o * factor for o in phases["optimizer"]]
    return replace(
        record,
        step_times_s=steps,
        step_time_s=summary,
        phase_time_s=replace(record.phase_time_s, optimizer=optimizer_median * factor),
        phase_times_s=phases or record.phase_times_s,
        items_per_s=(record.items_per_step / summary.median
                     if record.items_per_step and summary.median > 0 else record.items_per_s),
    )


def variants(pool: Sequence[Mapping[str, PairedRound]], factors: Sequence[float]
             ) -> dict[tuple[int, bool, float], dict[str, PairedRound]]:
    """Every pool round, as measured and with its sides swapped, with each injected factor."""
    out = {}
    for index, round_ in enumerate(pool):
        for swapped in (False, True):
            for factor in (1.0, *factors):
                cells = {}
                for cell, pair in round_.items():
                    base, cand = ((pair.candidate, pair.baseline) if swapped
                                  else (pair.baseline, pair.candidate))
                    cells[cell] = PairedRound(round_index=0, baseline=base,
                                              candidate=slow_optimizer(cand, factor))
                out[index, swapped, factor] = cells
    return out


# -- trials ------------------------------------------------------------------------------------------
def draw_rounds(pool_size: int, rounds: int, rng: random.Random) -> list[int]:
    """Which pool rounds a trial uses: distinct ones while the pool allows (a round drawn twice
    repeats its ratios exactly, which fresh rounds never do: a few repeated steady values make a
    zero-spread interval), with replacement beyond."""
    if rounds <= pool_size:
        return rng.sample(range(pool_size), rounds)
    return [rng.randrange(pool_size) for _ in range(rounds)]


def trial(prepared: Mapping, pool_size: int, rounds: int, factor: float, rng: random.Random, *,
          thresholds: Mapping[str, float], alpha: float) -> tuple[bool, bool, int, int]:
    """One resampled gate run: (any alarm, gate failed, cells regressed, cells)."""
    by_cell: dict[str, list[PairedRound]] = {}
    for position, pick in enumerate(draw_rounds(pool_size, rounds, rng)):
        drawn = prepared[pick, rng.random() < 0.5, factor]
        for cell, pair in drawn.items():
            by_cell.setdefault(cell, []).append(replace(pair, round_index=position))
    result = compare_paired(by_cell, thresholds=thresholds, alpha=alpha, max_rounds=rounds)
    alarm = any(m.outcome in ("regressed", "improved") for c in result.cells for m in c.metrics)
    regressed = sum(c.outcome == "regressed" for c in result.cells)
    return alarm, result.gate_failed, regressed, len(result.cells)


def estimate(prepared: Mapping, pool_size: int, rounds: int, trials: int, seed: int, *,
             thresholds: Mapping[str, float], alpha: float, factors: Sequence[float]) -> dict:
    """A/A and each slowdown at one number of rounds, `trials` resampled gate runs each."""
    out: dict = {"rounds": rounds}
    for factor in (1.0, *factors):
        rng = random.Random(f"{seed}-{rounds}-{factor}")
        alarms = fails = regressed = cells = 0
        for _ in range(trials):
            a, f, r, c = trial(prepared, pool_size, rounds, factor, rng, thresholds=thresholds,
                               alpha=alpha)
            alarms, fails, regressed, cells = alarms + a, fails + f, regressed + r, cells + c
        if factor == 1.0:
            out["aa_any_alarm"] = rate(alarms, trials)
            out["aa_gate_failed"] = rate(fails, trials)
        else:
            key = f"optimizer_{round((factor - 1) * 100):d}pct_slower"
            out[key] = {"gate_failed": rate(fails, trials), "cells_regressed": rate(regressed,
                                                                                     cells)}
    return out


def analyse(runs: Sequence[AbRun], *, trials: int, curve_trials: int, budget_s: float,
            curve_rounds: Sequence[int], thresholds: Mapping[str, float], alpha: float,
            seed: int, factors: Sequence[float] = SLOWDOWNS) -> dict:
    """Everything the report prints, as a JSON-ready dict."""
    pool = pool_rounds(runs)
    cells = sorted({cell for round_ in pool for cell in round_})
    if len(pool) < 2:
        raise BadInput(f"{len(pool)} round(s) in the ab runs given: resampling needs at least 2")
    durations = [s for s in map(round_seconds, runs) if s]
    round_s = statistics.median(durations) if durations else None
    budget_rounds = max(3, int(budget_s // round_s)) if round_s else None
    prepared = variants(pool, factors)
    common = {"thresholds": thresholds, "alpha": alpha, "factors": factors}
    at_budget = (estimate(prepared, len(pool), budget_rounds, trials, seed, **common)
                 if budget_rounds else None)
    curve = [estimate(prepared, len(pool), r, curve_trials, seed, **common)
             for r in sorted(set(curve_rounds)) if r >= 3]
    for row in (*([at_budget] if at_budget else []), *curve):
        row["seconds"] = row["rounds"] * round_s if round_s else None
        row["rounds_beyond_pool"] = row["rounds"] > len(pool)
    return {
        "ab_runs": [run.name for run in runs],
        "pool_rounds": len(pool),
        "cells": cells,
        "round_s": round_s,
        "budget_s": budget_s,
        "budget_rounds": budget_rounds,
        "threshold_pct": dict(thresholds),
        "alpha": alpha,
        "trials": trials,
        "curve_trials": curve_trials,
        "at_budget": at_budget,
        "curve": curve,
    }


def render(report: Mapping) -> str:
    """The report as a plain-text table."""
    threshold = statistics.mode(report["threshold_pct"].values())
    lines = [
        f"pool: {len(report['ab_runs'])} ab A/A run(s), {report['pool_rounds']} rounds, "
        f"{len(report['cells'])} cells; "
        + (f"{report['round_s']:.1f} s a round (median over runs)" if report["round_s"]
           else "round duration unknown (no times in the runs)"),
        f"gate: threshold {threshold:g}%, alpha {report['alpha']:g} (whole gate run); "
        f"rounds resampled whole, sides swapped at random",
        "",
    ]
    slow_keys = [k for k in (report["at_budget"] or report["curve"][0]) if k.startswith("optim")]
    header = ["rounds", "seconds", "A/A any alarm", "A/A gate fails",
              *(f"{k.split('_')[1].replace('pct', '%')} slower opt: gate fails / cells"
                for k in slow_keys)]

    def row(entry: Mapping, label: str = "") -> list[str]:
        seconds = f"{entry['seconds']:.0f}" if entry.get("seconds") else "-"
        rounds = f"{entry['rounds']}{'*' if entry['rounds_beyond_pool'] else ''}{label}"
        return [rounds, seconds, fmt_rate(entry["aa_any_alarm"]), fmt_rate(entry["aa_gate_failed"]),
                *(f"{fmt_rate(entry[k]['gate_failed'])} / {100 * entry[k]['cells_regressed']['rate']:.0f}%"
                  for k in slow_keys)]

    table = [header]
    if report["at_budget"]:
        table.append(row(report["at_budget"], f" (budget {report['budget_s']:g} s)"))
    table += [row(entry) for entry in report["curve"]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"rates: hits/trials = rate [95% Wilson interval]; {report['trials']} trials at "
                 f"the budget, {report['curve_trials']} on the curve")
    if any(e["rounds_beyond_pool"] for e in (*report["curve"], report["at_budget"] or {
            "rounds_beyond_pool": False})):
        lines.append(f"* more rounds than the pool's {report['pool_rounds']}: rounds repeat in a "
                     f"trial, so intervals are narrower than fresh rounds would give")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring); 2 with a message on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="ab runs: results/<id> (or either folder)")
    parser.add_argument("--results", type=Path, default=None,
                        help="take every <id>-baseline/<id>-candidate pair in this folder")
    parser.add_argument("--trials", type=int, default=200, help="trials at the budget (>= 200)")
    parser.add_argument("--curve-trials", type=int, default=100,
                        help="trials at each point of the curve")
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument("--curve-rounds", default=",".join(map(str, DEFAULT_CURVE_ROUNDS)))
    parser.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help=f"as `ab --threshold` (default {DEFAULT_THRESHOLD})")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    try:
        if args.trials < 1 or args.curve_trials < 1:
            raise BadInput("--trials and --curve-trials must be at least 1")
        try:
            curve_rounds = [int(x) for x in args.curve_rounds.split(",") if x.strip()]
        except ValueError:
            raise BadInput(f"--curve-rounds {args.curve_rounds!r}: write e.g. 5,10,20") from None
        started = time.perf_counter()
        report = analyse(find_ab_runs(args.runs, args.results), trials=args.trials,
                         curve_trials=args.curve_trials, budget_s=args.budget_s,
                         curve_rounds=curve_rounds, thresholds=parse_thresholds(args.threshold),
                         alpha=args.alpha, seed=args.seed)
        report["analysis_s"] = round(time.perf_counter() - started, 1)
    except BadInput as exc:
        print(f"compare_power: error: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    print(f"(analysed in {report['analysis_s']} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
