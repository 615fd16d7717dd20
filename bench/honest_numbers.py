"""Is bigbench's step time the truth? Compare it with a minimal hand-written training loop.

For each model x optimizer pair, in one run and interleaved (bigbench, hand, bigbench, hand, ...),
this measures the median step time that `bigbench sweep` records and the median of a bare loop
that builds the same model, optimizer and batch and times `zero_grad; forward; loss; backward;
step` with perf_counter and nothing else. Each side runs in a fresh process, so neither inherits
the other's warm caches. Reports the median over rounds of each side and their ratio.

    .venv/bin/python bench/honest_numbers.py            # mlp:seed, cnn:tiny, transformer:tiny x sgd, adam
    .venv/bin/python bench/honest_numbers.py --rounds 5 --json out.json

Target: every ratio within 5% of 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bigtrain.spec import preset_toml  # noqa: E402
PAIRS = [(m, o) for m in ("mlp:seed", "cnn:tiny", "transformer:tiny") for o in ("sgd", "adam")]

HAND_LOOP = r"""
import json, sys, time, statistics, torch
from bigtrain.workloads import resolve_model
model_name, optimizer, duration_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
ref = resolve_model(model_name)
w = ref.family.build(ref.size.name, batch_norm=True)   # the same model and batch as bigbench
cls, kw = {"sgd": (torch.optim.SGD, dict(lr=0.01, momentum=0.9)),
           "adam": (torch.optim.Adam, dict(lr=1e-3))}[optimizer]
opt = cls(w.model.parameters(), foreach=True, **kw)
model, x, y, loss_fn = w.model, w.inputs, w.targets, w.loss_fn
def step():
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
end = time.perf_counter() + 0.5
while time.perf_counter() < end:                      # warm-up
    step()
times = []
end = time.perf_counter() + duration_s
while time.perf_counter() < end or len(times) < 10:
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
print(json.dumps({"median_s": statistics.median(times), "n": len(times)}))
"""

def bigbench_median(model: str, optimizer: str, duration_s: float, workdir: Path, tag: str) -> float:
    """Median step time that `bigbench sweep` records for one cell."""
    preset = workdir / f"{tag}.toml"
    preset.write_text(preset_toml(
        description="honest-numbers benchmark", model=[model], optimizer=[optimizer],
        measure={"warmup_s": 0.5, "duration_s": duration_s, "min_steps": 10, "repeats": 1,
                 "cell_timeout_s": 300}))
    subprocess.run(
        [sys.executable, "-m", "bigtrain.cli", "sweep", "--preset", str(preset), "--out",
         str(workdir), "--run-id", tag, "--no-report"],
        check=True, capture_output=True, cwd=REPO,
    )
    record = json.loads((workdir / tag / "cells.jsonl").read_text().splitlines()[0])
    assert record["status"] == "ok", record
    return record["step_time_s"]["median"]


def hand_median(model: str, optimizer: str, duration_s: float) -> float:
    """Median step time of the bare loop, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", HAND_LOOP, model, optimizer, str(duration_s)],
                         check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])["median_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds measured per side")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--only", default=None, metavar="MODEL/OPT,..",
                        help="just these pairs, e.g. transformer:tiny/adam")
    args = parser.parse_args()
    pairs = PAIRS
    if args.only:
        pairs = [tuple(p.split("/")) for p in args.only.split(",")]

    rows = []
    with tempfile.TemporaryDirectory(prefix="bigtrain-honest-") as tmp:
        workdir = Path(tmp)
        for model, optimizer in pairs:
            ours, hand = [], []
            for round_index in range(args.rounds):
                tag = f"{model.replace(':', '-')}-{optimizer}-{round_index}"
                ours.append(bigbench_median(model, optimizer, args.duration, workdir, tag))
                hand.append(hand_median(model, optimizer, args.duration))
            row = {"model": model, "optimizer": optimizer,
                   "bigbench_median_s": statistics.median(ours),
                   "hand_median_s": statistics.median(hand), "rounds": args.rounds}
            row["ratio"] = row["bigbench_median_s"] / row["hand_median_s"]
            rows.append(row)
            print(f"{model:<18} {optimizer:<5} bigbench {row['bigbench_median_s'] * 1e3:9.4f} ms   "
                  f"hand {row['hand_median_s'] * 1e3:9.4f} ms   ratio {row['ratio']:.3f}",
                  flush=True)
    worst = max(abs(r["ratio"] - 1) for r in rows)
    print(f"largest deviation from the hand loop: {worst * 100:.1f}% (target: under 5%)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if worst < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
