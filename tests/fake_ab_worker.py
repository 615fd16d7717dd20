"""A stand-in for a side's interpreter in `bigbench ab` tests: the process boundary, faked.

Run as `fake_ab_worker.py -m bigtrain ab-worker ...` (through a shell wrapper given as
--baseline-python/--candidate-python), it speaks the A/B worker protocol 1 like the real worker,
but answers every job at once with a synthetic ok record instead of measuring: step time
FAKE_AB_STEP_S seconds (default 0.001) times a small jitter seeded by (cell, round, side), so the
statistics see exactly known values and nothing depends on this machine's speed.
"""

from __future__ import annotations

import json
import os
import random
import sys


def main(argv: list[str]) -> int:
    from bigtrain.cells.matrix import Cell
    from bigtrain.results.schema import PhaseTimes, StepTimeStats
    from bigtrain.run.records import cell_record

    out = sys.stdout
    if "--describe" in argv:
        out.write(json.dumps({"protocol": [1], "bigtrain_version": "fake", "python": sys.executable,
                              "environment": {"host": "fake", "cpu_model": "fake cpu"}}) + "\n")
        return 0
    step_s = float(os.environ.get("FAKE_AB_STEP_S", "0.001"))
    side = os.environ.get("FAKE_AB_SIDE", "")
    out.write(json.dumps({"ready": 1, "pid": os.getpid(), "cores": [0], "python": sys.executable,
                          "bigtrain_version": "fake", "torch_threads": 1}) + "\n")
    out.flush()
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("stop"):
            return 0
        job = message["job"]
        rng = random.Random(f"{job['cell_id']}:{job['repeat']}:{side}")
        median = step_s * (1 + rng.uniform(-0.002, 0.002))
        samples = [median * 0.99, median, median * 1.01]
        record = cell_record(
            job["run_id"], Cell(cell_id=job["cell_id"], **job["axes"]), job["repeat"],
            status="ok", step_time_s=StepTimeStats.from_samples(samples),
            step_times_s=tuple(samples),
            phase_time_s=PhaseTimes(forward=median * 0.4, backward=median * 0.4,
                                    optimizer=median * 0.2),
            items_per_s=64 / median, item_unit="samples", items_per_step=64,
            peak_rss_bytes=500 * 2**20, loss_first=1.0, loss_last=0.5, worker_pid=os.getpid())
        out.write(json.dumps({"record": record.to_json()}) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
