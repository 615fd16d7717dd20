"""What a sweep costs beyond its measured windows, with and without worker reuse.

Runs the same preset (default: `quick`, the default sweep) as `bigbench sweep` subprocesses,
alternating a sweep that reuses each worker process with one that starts a fresh worker for every
cell (`--fresh-workers`), and reports for each: wall time, the time inside measured windows, the
harness overhead (everything else: start-up, building, warm-up, FLOP counting, writing) as a share
of wall time, overhead per cell, and workers started. The start-up saved by reuse is the
difference in wall time per cell.

    .venv/bin/python bench/sweep_cost.py                  # quick preset, 1 pair
    .venv/bin/python bench/sweep_cost.py --pairs 2 --preset ci --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bigtrain.results.store import load_run  # noqa: E402


def one_sweep(preset: str, out: Path, run_id: str, fresh: bool) -> dict:
    """Run one sweep in a subprocess and summarise where its wall time went."""
    command = [sys.executable, "-m", "bigtrain.cli", "sweep", "--preset", preset, "--out",
               str(out), "--run-id", run_id, "--no-report"] + (["--fresh-workers"] if fresh else [])
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    wall_s = time.perf_counter() - start
    run = load_run(out / run_id)
    measured = [r for r in run.records if r.status == "ok"]
    window_s = sum(r.window_s or 0 for r in measured)
    pids = {r.worker_pid for r in run.records if r.worker_pid}
    return {
        "mode": "fresh worker per cell" if fresh else "reused workers",
        "wall_s": wall_s,
        "cells": len(measured),
        "window_s": window_s,
        "overhead_pct": 100 * (wall_s - window_s) / wall_s,
        "overhead_per_cell_s": (wall_s - window_s) / max(1, len(measured)),
        "workers": len(pids),
        "failed": sum(1 for r in run.records if r.failed),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--pairs", type=int, default=1, help="reuse/fresh pairs to alternate")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bigtrain-cost-") as tmp:
        for index in range(args.pairs):
            for fresh in (False, True):
                row = one_sweep(args.preset, Path(tmp), f"{index}-{'fresh' if fresh else 'reuse'}",
                                fresh)
                rows.append(row)
                print(f"{row['mode']:<22} wall {row['wall_s']:7.1f} s  windows {row['window_s']:6.1f} s"
                      f"  overhead {row['overhead_pct']:5.1f}%  ({row['overhead_per_cell_s']:.2f} s/cell,"
                      f" {row['cells']} cells, {row['workers']} workers, {row['failed']} failed)",
                      flush=True)
    for mode in ("reused workers", "fresh worker per cell"):
        mine = [r for r in rows if r["mode"] == mode]
        print(f"median {mode:<22} wall {statistics.median(r['wall_s'] for r in mine):.1f} s, "
              f"overhead {statistics.median(r['overhead_pct'] for r in mine):.1f}%, "
              f"{statistics.median(r['overhead_per_cell_s'] for r in mine):.2f} s/cell")
    reuse = statistics.median(r["wall_s"] / r["cells"] for r in rows if r["mode"] == "reused workers")
    fresh = statistics.median(r["wall_s"] / r["cells"] for r in rows if r["mode"] != "reused workers")
    print(f"start-up saved by reuse: {fresh - reuse:.2f} s per cell "
          f"(fresh/reuse wall ratio {fresh / reuse:.2f})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
