"""How often `bigbench history` finds a planted shift, and how often it raises a false alarm.

Series are built from real recorded step times (results/cpu-2vcpu-quick and the fixture runs in
tests/fixtures/runs): each synthetic commit resamples one real cell's steps (bootstrap), times a
run-level factor (log-normal, `run noise`), times the planted shift from a random commit on.
The detector is the one the command uses (bigtrain.history.changepoints.detect, defaults).

- detected: a regression change point within one commit of the planted one
- false alarm: any change point at all in a series with no shift

Methods compared on the same series (same seed):
- `history`: what the command runs (PELT, noise floor from the run-to-run spread AND the steps)
- `medians-only`: the same detector given the run medians alone (no per-step spread)
- `otava`: Apache Otava's E-divisive (Hunter) `compute_change_points` on the run medians, its
  defaults (window 50, p 0.001), with `--otava DIR` naming an unpacked apache-otava wheel. It is
  not a dependency: it pins numpy 2.2 and scipy < 1.17 and pulls BigQuery, Postgres and Slack
  clients; its analysis module imports numpy and scipy only, so the bench can call it.

Seeded and fast (seconds on 2 cores):
    PYTHONPATH=$PWD python bench/history_power.py [--trials 500] [--commits 20] [--seed 0]
        [--otava /tmp/otava_src]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bigtrain.compare.stats import wilson_interval as wilson  # noqa: E402
from bigtrain.history.changepoints import DEFAULT_MIN_SEGMENT, REGRESSION, detect  # noqa: E402
from bigtrain.history.synthetic import read_source  # noqa: E402

SOURCES = [REPO / "results" / "cpu-2vcpu-quick", REPO / "tests" / "fixtures" / "runs" / "cpu-1thread",
           REPO / "tests" / "fixtures" / "runs" / "cpu-2threads"]
SHIFTS_PCT = (0.0, 2.0, 5.0, 10.0)


def repeat_noise_pct() -> float:
    """This box's run-to-run noise: robust spread of log(repeat 1 / repeat 0) of the fixture
    cells recorded twice (cpu-1thread), over sqrt 2; in percent."""
    _, records = read_source(SOURCES[1])
    medians: dict[str, dict[int, float]] = {}
    for record in records:
        medians.setdefault(record["cell_id"], {})[record["repeat"]] = record["step_time_s"]["median"]
    ratios = np.array([math.log(v[1] / v[0]) for v in medians.values() if len(v) == 2])
    return 100 * 1.4826 * float(np.median(np.abs(ratios - np.median(ratios)))) / math.sqrt(2)


def cells() -> list[np.ndarray]:
    """Every recorded ok cell with at least 20 step times."""
    out = []
    for source in SOURCES:
        _, records = read_source(source)
        out += [np.asarray(r["step_times_s"], dtype=float) for r in records
                if len(r["step_times_s"]) >= 20]
    return out


def ours(values: list[float], samples: list[np.ndarray]) -> list[tuple[int, bool]]:
    """(index, is a regression) of each change point `bigbench history` reports."""
    found = detect(values, samples, higher_is_better=False).change_points
    return [(c.index, c.verdict == REGRESSION) for c in found]


def medians_only(values: list[float], samples: list[np.ndarray]) -> list[tuple[int, bool]]:
    """The same detector without the per-step spread."""
    return ours(values, [])


def otava_method(values: list[float], samples: list[np.ndarray]) -> list[tuple[int, bool]]:
    """Apache Otava's E-divisive on the run medians (imported from --otava DIR)."""
    from otava.analysis import compute_change_points

    found, _ = compute_change_points(values, window_len=50, max_pvalue=0.001)
    return [(int(c.index), bool(c.stats.mean_2 > c.stats.mean_1)) for c in found]


def trial(rng: np.random.Generator, steps: np.ndarray, commits: int, shift_pct: float,
          run_noise_pct: float, methods: dict) -> dict[str, tuple[bool, bool]]:
    """{method: (detected, any change point)} for one synthetic series."""
    planted = int(rng.integers(DEFAULT_MIN_SEGMENT, commits - DEFAULT_MIN_SEGMENT + 1))
    sigma = math.log1p(run_noise_pct / 100)
    values, samples = [], []
    for index in range(commits):
        factor = math.exp(rng.normal(0, sigma)) if sigma else 1.0
        if index >= planted:
            factor *= 1 + shift_pct / 100
        run = rng.choice(steps, size=steps.size, replace=True) * factor
        values.append(float(np.median(run)))
        samples.append(run)
    out = {}
    for name, method in methods.items():
        found = method(values, samples)
        hit = any(up and abs(index - planted) <= 1 for index, up in found)
        out[name] = (hit, bool(found))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--otava", type=Path, default=None,
                        help="an unpacked apache-otava wheel, to compare its E-divisive")
    args = parser.parse_args()
    methods = {"history": ours, "medians-only": medians_only}
    if args.otava is not None:
        sys.path.insert(0, str(args.otava))
        methods["otava"] = otava_method
    pool = cells()
    box_noise = repeat_noise_pct()
    noises = (0.0, 1.0, round(box_noise, 1))
    started = time.perf_counter()
    print(f"{len(pool)} real cells; {args.trials} series of {args.commits} commits per row; "
          f"seed {args.seed}; this box's repeat-to-repeat noise {box_noise:.1f}%\n")
    names = list(methods)
    print("| run noise | planted shift | " + " | ".join(
        f"{name}: detected [95% Wilson] | {name}: any change point" for name in names) + " |")
    print("| --- | --- |" + " --- | --- |" * len(names))
    for noise in noises:
        for shift in SHIFTS_PCT:
            rng = np.random.default_rng([args.seed, int(noise * 10), int(shift * 10)])
            hits = dict.fromkeys(names, 0)
            alarms = dict.fromkeys(names, 0)
            for _ in range(args.trials):
                steps = pool[int(rng.integers(len(pool)))]
                for name, (hit, alarm) in trial(rng, steps, args.commits, shift, noise,
                                                methods).items():
                    hits[name] += hit
                    alarms[name] += alarm
            cells_text = []
            for name in names:
                low, high = wilson(hits[name], args.trials)
                a_low, a_high = wilson(alarms[name], args.trials)
                detected = ("n/a" if shift == 0 else
                            f"{hits[name] / args.trials:.0%} [{low:.0%}, {high:.0%}]")
                cells_text.append(f"{detected} | {alarms[name] / args.trials:.0%} "
                                  f"[{a_low:.0%}, {a_high:.0%}]")
            print(f"| {noise:g}% | {shift:g}% | " + " | ".join(cells_text) + " |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
