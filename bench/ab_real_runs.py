"""Real end-to-end `bigbench ab` runs on this machine, tallied: A/A runs (how often the whole gate
raises any alarm with nothing changed) and runs with the candidate's optimizer step slowed by the
test-only plugin bench/compare_slow_optimizer.py (how often the gate catches it).

Each run is a separate `python -m bigtrain ab` process writing its two run folders under --out, so
the rounds can be resampled later (bench/compare_power.py). Timing on a shared machine: say what
else ran. Usage:

    python bench/ab_real_runs.py --out /work/abdata --aa 20 --slowed 3 --slowdown-pct 25 \
        -- --preset ci --rounds 3 --budget-s 150
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALARMS = ("regressed", "improved", "failed")


def _run(out: Path, run_id: str, ab_args: list[str], candidate_env: dict[str, str]) -> dict:
    json_path = out / f"{run_id}.json"
    command = [sys.executable, "-m", "bigtrain", "ab", *ab_args, "--out", str(out),
               "--run-id", run_id, "--json", str(json_path)]
    for key, value in candidate_env.items():
        command += ["--candidate-env", f"{key}={value}"]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    (out / f"{run_id}.log").write_text(done.stdout + done.stderr)
    data = json.loads(json_path.read_text()) if json_path.is_file() else {}
    outcomes = {c["cell_id"]: c["verdict"] for c in data.get("cells", [])}
    return {"run_id": run_id, "exit_code": done.returncode,
            "wall_s": round(time.monotonic() - started, 1),
            "rounds": data.get("ab", {}).get("rounds_used"),
            "alarm_cells": sorted(k for k, v in outcomes.items() if v in ALARMS),
            "outcomes": sorted(outcomes.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--aa", type=int, default=20, help="A/A runs")
    parser.add_argument("--slowed", type=int, default=3, help="runs with the candidate slowed")
    parser.add_argument("--slowdown-pct", type=float, default=25.0)
    parser.add_argument("--prefix", default=time.strftime("%H%M%S"))
    parser.add_argument("ab_args", nargs="*", help="flags for bigbench ab (after --)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    slowed_env = {"BIGTRAIN_PLUGINS": "compare_slow_optimizer",
                  "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), str(REPO),
                                                 os.environ.get("PYTHONPATH", "")]),
                  "BIGTRAIN_SLOWDOWN_PCT": f"{args.slowdown_pct:g}"}
    plan = ([(f"{args.prefix}-aa{i:02d}", {}) for i in range(args.aa)]
            + [(f"{args.prefix}-slow{args.slowdown_pct:g}-{i:02d}", slowed_env)
               for i in range(args.slowed)])
    results = []
    with open(args.out / f"{args.prefix}-tally.jsonl", "a", encoding="utf-8") as tally:
        for run_id, env in plan:
            result = _run(args.out, run_id, args.ab_args, env)
            results.append(result)
            tally.write(json.dumps(result) + "\n")
            tally.flush()
            print(json.dumps(result), flush=True)
    aa = [r for r in results if "-aa" in r["run_id"]]
    slow = [r for r in results if "-slow" in r["run_id"]]
    print(f"A/A: {sum(1 for r in aa if r['alarm_cells'])} of {len(aa)} runs raised an alarm; "
          f"slowed {args.slowdown_pct:g}%: {sum(1 for r in slow if r['exit_code'] == 1)} of "
          f"{len(slow)} failed the gate")


if __name__ == "__main__":
    main()
