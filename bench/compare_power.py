"""How often does `bigbench compare` cry wolf, and how often does it catch a real slowdown?

    .venv/bin/python bench/compare_power.py --trials 200            # record (once), then analyse
    .venv/bin/python bench/compare_power.py --trials 200 --runs 8   # more recorded runs

Recording: independent `bigbench sweep` runs of a small preset (bench/presets/compare-power.toml),
each with --repeats R, made one after the other and interleaved: a normal run, a run whose
optimizer step is 10% slower, one 25% slower (the test-only plugin bench/compare_slow_optimizer.py,
loaded through BIGTRAIN_PLUGINS and slowing only the `adam` cells), then the next normal run, and
so on, so that machine drift touches all kinds alike. Runs already complete in --work are reused.

Analysis, at the default threshold (5%) and alpha:
- real A/A: every pair of distinct normal runs compared whole, exactly as `bigbench compare` does
  (pairs share runs, so they are not independent trials);
- resampled A/A: --trials times, two distinct normal runs, --per-side random repeats of each cell
  from each (repeats stay within their own run, so run-to-run drift is kept);
- detection: --trials times, a normal run against a slowed run, resampled the same way; a trial
  catches the slowdown when the slowed (adam) cell is `regressed`. The sgd cell, not slowed, in
  the same trials gives another false-alarm count.

Rates are printed with their trial counts and a 95% Wilson interval; --json writes them too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bigtrain.compare import DEFAULT_THRESHOLD_PCT, group_repeats  # noqa: E402
from bigtrain.compare import compare_runs as _compare_runs  # noqa: E402
from bigtrain.results.store import LoadedRun, load_run  # noqa: E402
from bigtrain.stats import DEFAULT_ALPHA  # noqa: E402

SLOWED_OPTIMIZER = "adam"
DEFAULT_PRESET = ROOT / "bench" / "presets" / "compare-power.toml"


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial rate."""
    if n == 0:
        return (0.0, 1.0)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(hits: int, n: int) -> dict:
    low, high = wilson(hits, n)
    return {"hits": hits, "trials": n, "rate": hits / n if n else None, "wilson95": [low, high]}


def fmt_rate(r: dict) -> str:
    if not r["trials"]:
        return "no trials"
    low, high = r["wilson95"]
    return (f"{r['hits']}/{r['trials']} = {100 * r['rate']:.1f}% "
            f"(95% CI {100 * low:.1f}-{100 * high:.1f}%)")


# -- recording -----------------------------------------------------------------------------------
def run_complete(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "manifest.json").read_text())["state"] == "complete"
    except (OSError, ValueError, KeyError):
        return False


def record(work: Path, run_id: str, preset: Path, repeats: int, slowdown_pct: int) -> Path:
    """One `bigbench sweep` run (reused when already complete)."""
    run_dir = work / run_id
    if run_complete(run_dir):
        return run_dir
    if run_dir.exists():  # a half-made run from an interrupted recording: make it afresh
        import shutil

        shutil.rmtree(run_dir)
    env = dict(os.environ)
    if slowdown_pct:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "bench"),
                                                          env.get("PYTHONPATH")]))
        env["BIGTRAIN_PLUGINS"] = ",".join(filter(None, [env.get("BIGTRAIN_PLUGINS"),
                                                         "compare_slow_optimizer"]))
        env["BIGTRAIN_SLOWDOWN_PCT"] = str(slowdown_pct)
        env["BIGTRAIN_SLOWDOWN_OPTIMIZERS"] = SLOWED_OPTIMIZER
    bigbench = Path(sys.executable).with_name("bigbench")
    command = [str(bigbench), "sweep", "--preset", str(preset), "--repeats", str(repeats),
               "--out", str(work), "--run-id", run_id, "--no-report"]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not run_complete(run_dir):
        raise SystemExit(f"sweep {run_id} failed (exit {done.returncode}):\n{done.stdout[-2000:]}"
                         f"\n{done.stderr[-2000:]}")
    print(f"  recorded {run_id} in {time.perf_counter() - started:.0f} s", flush=True)
    return run_dir


# -- analysis ------------------------------------------------------------------------------------
def subsample(run: LoadedRun, per_side: int, rng: random.Random) -> LoadedRun:
    """The run with `per_side` randomly chosen repeats of each cell (all when it has fewer)."""
    records = []
    for _, repeats in sorted(group_repeats(run.records).items()):
        chosen = rng.sample(repeats, min(per_side, len(repeats)))
        records.extend(sorted(chosen, key=lambda r: r.repeat))
    return replace(run, records=tuple(records))


def cell_outcomes(comparison) -> dict[str, tuple[str, dict[str, str]]]:
    """optimizer -> (cell verdict, metric -> verdict)."""
    return {
        cell.axes["optimizer"]: (cell.outcome, {m.metric.name: m.outcome for m in cell.metrics})
        for cell in comparison.cells
    }


def analyse(aa: list[LoadedRun], slowed: dict[int, list[LoadedRun]], trials: int,
            per_side: int, seed: int, alpha: float = DEFAULT_ALPHA) -> dict:
    rng = random.Random(seed)
    out: dict = {"threshold_pct": DEFAULT_THRESHOLD_PCT, "alpha": alpha,
                 "per_side": per_side, "seed": seed}

    def compare_runs(base: LoadedRun, cand: LoadedRun):  # noqa: ANN202 - at this alpha
        return _compare_runs(base, cand, alpha=alpha)

    # real A/A: whole runs, every distinct pair
    alarms = 0
    pairs = 0
    for i in range(len(aa)):
        for j in range(len(aa)):
            if i != j:
                pairs += 1
                alarms += compare_runs(aa[i], aa[j]).gate_failed
    out["aa_real_pairs"] = rate(alarms, pairs)

    # resampled A/A
    alarms = 0
    metric_alarms: Counter = Counter()
    for _ in range(trials):
        i, j = rng.sample(range(len(aa)), 2)
        comparison = compare_runs(subsample(aa[i], per_side, rng), subsample(aa[j], per_side, rng))
        alarms += comparison.gate_failed
        for _, (_, metrics) in cell_outcomes(comparison).items():
            for name, verdict in metrics.items():
                metric_alarms[name] += verdict == "regressed"
    out["aa_resampled"] = rate(alarms, trials)
    out["aa_resampled_by_metric"] = {k: rate(v, trials) for k, v in sorted(metric_alarms.items())}

    # detection
    out["detection"] = {}
    for pct, runs in sorted(slowed.items()):
        caught = 0
        others_alarm = 0
        by_metric: Counter = Counter()
        changes = []
        for _ in range(trials):
            base = subsample(rng.choice(aa), per_side, rng)
            cand = subsample(rng.choice(runs), per_side, rng)
            outcomes = cell_outcomes(compare_runs(base, cand))
            verdict, metrics = outcomes[SLOWED_OPTIMIZER]
            caught += verdict == "regressed"
            for name, v in metrics.items():
                by_metric[name] += v == "regressed"
            others_alarm += any(v == "regressed" for opt, (v, _) in outcomes.items()
                                if opt != SLOWED_OPTIMIZER)
        for base in aa:
            for cand in runs:
                comparison = compare_runs(base, cand)
                for cell in comparison.cells:
                    if cell.axes["optimizer"] == SLOWED_OPTIMIZER:
                        changes += [(m.metric.name, m.verdict.change_pct) for m in cell.metrics]
        med = {}
        for name in {n for n, _ in changes}:
            values = sorted(c for n, c in changes if n == name)
            med[name] = values[len(values) // 2]
        out["detection"][pct] = {
            "caught": rate(caught, trials),
            "caught_by_metric": {k: rate(v, trials) for k, v in sorted(by_metric.items())},
            "unslowed_cell_false_alarm": rate(others_alarm, trials),
            "median_measured_change_pct": med,
        }
    return out


def noise_summary(aa: list[LoadedRun]) -> dict[str, dict[str, float]]:
    """Spread of per-repeat median step times: within a run and between runs, per cell."""
    summary = {}
    by_opt: dict[str, list[list[float]]] = {}
    for run in aa:
        for _, repeats in group_repeats(run.records).items():
            ok = [r.step_time_s.median for r in repeats if r.step_time_s]
            if ok:
                by_opt.setdefault(repeats[0].optimizer, []).append(ok)
    for opt, runs in by_opt.items():
        all_values = [v for run in runs for v in run]
        centre = sorted(all_values)[len(all_values) // 2]
        run_medians = [sorted(r)[len(r) // 2] for r in runs]
        within = [100 * (max(r) - min(r)) / centre for r in runs]
        summary[opt] = {
            "median_step_ms": 1e3 * centre,
            "within_run_range_pct_median": sorted(within)[len(within) // 2],
            "between_run_medians_range_pct": 100 * (max(run_medians) - min(run_medians)) / centre,
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="resampled trials per experiment")
    parser.add_argument("--runs", type=int, default=6, help="recorded runs of each kind")
    parser.add_argument("--repeats", type=int, default=8, help="repeats per recorded run")
    parser.add_argument("--per-side", type=int, default=5, help="repeats a side in a trial")
    parser.add_argument("--slowdowns", default="10,25", help="injected slowdowns, percent")
    parser.add_argument("--preset", type=Path, default=DEFAULT_PRESET)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bigbench-compare-power"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--alphas", default="0.05,0.001",
                        help="other significance levels to show the trade-off at (the default "
                             f"{DEFAULT_ALPHA} is always analysed first)")
    args = parser.parse_args()
    slowdowns = [int(s) for s in args.slowdowns.split(",") if s.strip()]

    args.work.mkdir(parents=True, exist_ok=True)
    print(f"recording into {args.work} ({args.runs} runs of each kind, {args.repeats} repeats)")
    aa_dirs: list[Path] = []
    slow_dirs: dict[int, list[Path]] = {pct: [] for pct in slowdowns}
    for k in range(args.runs):
        aa_dirs.append(record(args.work, f"aa-{k:02d}", args.preset, args.repeats, 0))
        for pct in slowdowns:
            slow_dirs[pct].append(
                record(args.work, f"slow{pct}-{k:02d}", args.preset, args.repeats, pct))

    aa = [load_run(d) for d in aa_dirs]
    slowed = {pct: [load_run(d) for d in dirs] for pct, dirs in slow_dirs.items()}
    results = analyse(aa, slowed, args.trials, args.per_side, args.seed)
    others = [float(a) for a in args.alphas.split(",") if a.strip()]
    results["other_alphas"] = {a: analyse(aa, slowed, args.trials, args.per_side, args.seed, a)
                               for a in others}
    results["noise"] = noise_summary(aa)
    results["recorded"] = {"runs_per_kind": args.runs, "repeats_per_run": args.repeats,
                           "preset": str(args.preset), "work": str(args.work)}

    print(f"\nthreshold {results['threshold_pct']:g}%, alpha {results['alpha']:g}, "
          f"{args.per_side} repeats a side")
    for opt, noise in results["noise"].items():
        print(f"noise, {opt}: median step {noise['median_step_ms']:.3g} ms; repeats within a run "
              f"span {noise['within_run_range_pct_median']:.1f}% (median over runs); run medians "
              f"span {noise['between_run_medians_range_pct']:.1f}%")
    print(f"A/A, real runs, every ordered pair: false alarms {fmt_rate(results['aa_real_pairs'])}")
    print(f"A/A, resampled:                     false alarms {fmt_rate(results['aa_resampled'])}")
    for pct, det in results["detection"].items():
        print(f"+{pct}% optimizer step: caught {fmt_rate(det['caught'])}")
        for name, r in det["caught_by_metric"].items():
            change = det["median_measured_change_pct"].get(name)
            print(f"    {name:15s} regressed {fmt_rate(r)}; median measured change {change:+.1f}%")
        print(f"    un-slowed sgd cell false alarm {fmt_rate(det['unslowed_cell_false_alarm'])}")
    for a, other in results["other_alphas"].items():
        detect = "; ".join(f"+{pct}% caught {fmt_rate(d['caught'])}"
                           for pct, d in other["detection"].items())
        print(f"(at alpha {a:g}: A/A real pairs {fmt_rate(other['aa_real_pairs'])}; A/A resampled "
              f"{fmt_rate(other['aa_resampled'])}; {detect})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
