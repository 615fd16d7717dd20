"""How long `bigbench report` takes on a big comparison: 500 cells on each of 3 machines.

The runs are built from the committed fixture records (real CPU measurements) copied across a
larger matrix, with synthetic machine names and scaled numbers; a third of them carry telemetry
shaped by the real sampler (`bigtrain.measure.telemetry.summarise_window`) so the telemetry tables and
timelines are drawn too, and a few cells fail. Only the rendering time is measured, never the
numbers. Target: under 30 s on the 2-core development box.

    .venv/bin/python bench/report_speed.py [--repeats 3] [--cells 500] [--keep DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "runs" / "cpu-2threads"
TARGET_S = 30.0

MODELS = ("mlp:seed", "mlp:small", "cnn:tiny", "rnn:lstm-small", "transformer:tiny")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
PRECISIONS = ("fp32", "bf16")
BATCH_NORMS = ("on", "off")
BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512)
MACHINES = (("bench-gpu-a", 12.0, True), ("bench-gpu-b", 7.0, True), ("bench-cpu", 1.0, False))


def build_runs(root: Path, cells: int) -> list[Path]:
    """Write three run folders of `cells` records each (plus repeats of nothing: one record each)."""
    from bigtrain.measure.telemetry import (EnergyEstimate, TelemetrySample, WindowReadings,
                                            WindowWork, summarise_window)
    from bigtrain.results.schema import Manifest, StepTimeStats
    from bigtrain.results.store import RunWriter, load_run

    fixture = load_run(FIXTURE)
    template = next(r for r in fixture.records if r.status == "ok" and len(r.step_times_s) >= 20)
    combos = list(itertools.product(MODELS, OPTIMIZERS, PRECISIONS, BATCH_NORMS, BATCH_SIZES))
    combos = combos[:cells]
    runs = []
    for host, speed, has_gpu in MACHINES:
        rnd = random.Random(host)
        env = {**fixture.manifest.environment, "host": host,
               "gpus": [{"index": 0, "name": f"Synthetic GPU {host[-1].upper()}"}] if has_gpu else []}
        manifest = Manifest(**{**dataclasses.asdict(fixture.manifest), "run_id": host,
                               "environment": env, "state": "complete"})
        path = root / host
        with RunWriter(path) as writer:
            writer.write_manifest(manifest)
            for i, (model, opt, prec, bn, bs) in enumerate(combos):
                axes = dict(model=model, optimizer=opt, precision=prec, batch_norm=bn,
                            batch_size=bs, device="cuda:0" if has_gpu else "cpu")
                if rnd.random() < 0.04:
                    writer.append(dataclasses.replace(
                        template, **axes, run_id=host, cell_id=f"c{i}", status="oom",
                        reason="CUDA out of memory (synthetic)", step_time_s=None,
                        step_times_s=(), items_per_s=None))
                    continue
                factor = bs / 32 * speed * rnd.uniform(0.8, 1.2)
                steps = tuple(t / factor for t in template.step_times_s[:100])
                telemetry = None
                if has_gpu and i % 3 == 0:
                    samples = [TelemetrySample(t_s=0.1 * k, util_pct=70.0 + k % 20,
                                               power_w=300.0 + k, sm_clock_mhz=1900.0)
                               for k in range(40)]
                    energy = EnergyEstimate(energy_j=1200.0, window_s=4.0, method="tick_aligned")
                    telemetry = summarise_window(
                        WindowReadings(samples=samples, interval_s=0.1, energy=energy),
                        WindowWork(window_s=4.0, min_window_s=1.0, steps=len(steps),
                                   items=len(steps) * bs)).as_dict()
                writer.append(dataclasses.replace(
                    template, **axes, run_id=host, cell_id=f"c{i}",
                    step_time_s=StepTimeStats.from_samples(steps), step_times_s=steps,
                    items_per_s=template.items_per_s * factor, telemetry=telemetry,
                    telemetry_reason=None if telemetry else "no telemetry (synthetic)"))
        runs.append(path)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cells", type=int, default=500)
    parser.add_argument("--keep", type=Path, default=None, help="leave the last report here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bigtrain.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        runs = build_runs(Path(tmp) / "runs", args.cells)
        times = []
        for i in range(args.repeats):
            out = args.keep if (args.keep and i == args.repeats - 1) else Path(tmp) / f"out{i}"
            start = time.perf_counter()
            index = write_report(runs, out, baseline=runs[-1])
            times.append(time.perf_counter() - start)
        figures = len(list((index.parent / "figures").glob("*.png")))
        size_mb = index.stat().st_size / 1e6
    median = statistics.median(times)
    print(f"report of {args.cells} cells x {len(MACHINES)} machines: median {median:.1f} s "
          f"over {args.repeats} (all: {', '.join(f'{t:.1f}' for t in times)} s); "
          f"{figures} figures, index.html {size_mb:.1f} MB; target < {TARGET_S:.0f} s")
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
