"""Is bigbench's step time the truth? Compare it with a minimal hand-written training loop.

For each model x optimizer pair, in one run and interleaved (bigbench, hand, bigbench, hand, ...),
this measures the median step time that `bigbench sweep` records and the median of a bare loop
that builds the same model, optimizer and batch and times `zero_grad; forward; loss; backward;
step` with perf_counter and nothing else. Each side runs in a fresh process, so neither inherits
the other's warm caches. Reports the median over rounds of each side and their ratio.

    .venv/bin/python bench/honest_numbers.py            # mlp:seed, cnn:tiny, transformer:tiny x sgd, adam
    .venv/bin/python bench/honest_numbers.py --rounds 5 --json out.json
    python3 bench/honest_numbers.py --device cuda --rounds 1 \
        --only transformer:gpt2-small/adamw/fused/bf16/16,cnn:resnet50/sgd/foreach/bf16/256

A pair is `model/optimizer[/impl[/precision[/batch]]]` (defaults foreach, fp32, the model's own
batch). On the CPU the bare loop times each step with perf_counter and takes the median; on a GPU
it synchronizes once before and once after a window of steps and takes the mean (a per-step
synchronize would itself slow the loop). The bare loop applies the same precision recipe (TF32
switches, autocast, GradScaler for fp16) and builds the model with the same workload builder, so
channels_last on a GPU is shared too.

Target: every ratio within 5% of 1 (`--target-pct`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bigtrain.cells.spec import preset_toml  # noqa: E402
PAIRS = [f"{m}/{o}" for m in ("mlp:seed", "cnn:tiny", "transformer:tiny") for o in ("sgd", "adam")]

HAND_LOOP = r"""
import json, sys, time, statistics, torch
from bigtrain.training.precision import resolve_precision
from bigtrain.workloads import resolve_model
model_name, optimizer, impl, precision, batch, device, duration_s = sys.argv[1:8]
duration_s, batch = float(duration_s), (None if batch == "default" else int(batch))
recipe = resolve_precision(precision)
recipe.apply_backend_flags()
ref = resolve_model(model_name)
w = ref.family.build(ref.size.name, batch_size=batch, batch_norm=True, device=device)  # as bigbench
cls, kw = {"sgd": (torch.optim.SGD, dict(lr=0.01, momentum=0.9)),
           "adam": (torch.optim.Adam, dict(lr=1e-3)),
           "adamw": (torch.optim.AdamW, dict(lr=1e-3))}[optimizer]
kw.update({"forloop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}[impl])
opt = cls(w.model.parameters(), **kw)
scaler = recipe.make_scaler(torch.device(device).type)
model, x, y, loss_fn = w.model, w.inputs, w.targets, w.loss_fn
cuda = device.startswith("cuda")
def step():
    with recipe.autocast(torch.device(device).type):
        loss = loss_fn(model(x), y)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    opt.zero_grad(set_to_none=True)
def sync():
    if cuda:
        torch.cuda.synchronize(device)
end = time.perf_counter() + 0.5
while time.perf_counter() < end:                      # warm-up
    step()
sync()
times = []
begin = time.perf_counter()
end = begin + duration_s
while time.perf_counter() < end or len(times) < 10:
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
sync()
window_s = time.perf_counter() - begin
seconds = window_s / len(times) if cuda else statistics.median(times)
print(json.dumps({"median_s": seconds, "n": len(times)}))
"""

@dataclass(frozen=True, kw_only=True)
class Pair:
    """One cell measured both ways: model, optimizer and the axes the bare loop must mirror."""

    model: str
    optimizer: str
    impl: str = "foreach"
    precision: str = "fp32"
    batch_size: str = "default"

    @classmethod
    def parse(cls, text: str) -> Pair:
        """`model/optimizer[/impl[/precision[/batch]]]`, e.g. `cnn:resnet50/sgd/foreach/bf16/256`."""
        parts = text.split("/")
        if not 2 <= len(parts) <= 5 or not all(parts):
            raise SystemExit(f"honest_numbers: bad pair {text!r}; "
                             "expected model/optimizer[/impl[/precision[/batch]]]")
        names = ("model", "optimizer", "impl", "precision", "batch_size")
        return cls(**dict(zip(names, parts)))

    @property
    def tag(self) -> str:
        return "-".join((self.model.replace(":", "-"), self.optimizer, self.impl, self.precision,
                         self.batch_size))


def bigbench_median(pair: Pair, device: str, duration_s: float, workdir: Path, tag: str) -> float:
    """Median step time that `bigbench sweep` records for one cell."""
    preset = workdir / f"{tag}.toml"
    preset.write_text(preset_toml(
        description="honest-numbers benchmark", model=[pair.model], optimizer=[pair.optimizer],
        impl=[pair.impl], precision=[pair.precision], device=[device],
        batch_size=[pair.batch_size if pair.batch_size == "default" else int(pair.batch_size)],
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


def hand_median(pair: Pair, device: str, duration_s: float) -> float:
    """Step time of the bare loop, in a fresh process (median per step; window mean on a GPU)."""
    out = subprocess.run([sys.executable, "-c", HAND_LOOP, pair.model, pair.optimizer, pair.impl,
                          pair.precision, pair.batch_size, device, str(duration_s)],
                         check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])["median_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds measured per side")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--target-pct", type=float, default=5.0,
                        help="exit 1 when a ratio is further than this from 1")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--only", default=None, metavar="MODEL/OPT[/IMPL[/PREC[/BATCH]]],..",
                        help="just these pairs, e.g. transformer:tiny/adam")
    args = parser.parse_args(argv)
    device = "cuda:0" if args.device == "cuda" else args.device
    pairs = [Pair.parse(p) for p in (args.only.split(",") if args.only else PAIRS)]

    rows = []
    with tempfile.TemporaryDirectory(prefix="bigtrain-honest-") as tmp:
        workdir = Path(tmp)
        for pair in pairs:
            ours, hand = [], []
            for round_index in range(args.rounds):
                tag = f"{pair.tag}-{round_index}"
                ours.append(bigbench_median(pair, device, args.duration, workdir, tag))
                hand.append(hand_median(pair, device, args.duration))
            row = {"model": pair.model, "optimizer": pair.optimizer, "impl": pair.impl,
                   "precision": pair.precision, "batch_size": pair.batch_size, "device": device,
                   "bigbench_median_s": statistics.median(ours),
                   "hand_median_s": statistics.median(hand), "rounds": args.rounds}
            row["ratio"] = row["bigbench_median_s"] / row["hand_median_s"]
            rows.append(row)
            # Written after every pair, so a deadline that stops the script keeps what it measured.
            if args.json:
                args.json.write_text(json.dumps(rows, indent=2))
            print(f"{pair.model:<22} {pair.optimizer:<5} {pair.impl:<7} {pair.precision:<4} "
                  f"bigbench {row['bigbench_median_s'] * 1e3:9.4f} ms   "
                  f"hand {row['hand_median_s'] * 1e3:9.4f} ms   ratio {row['ratio']:.3f}",
                  flush=True)
    worst = max(abs(r["ratio"] - 1) for r in rows)
    print(f"largest deviation from the hand loop: {worst * 100:.1f}% (target: under {args.target_pct:g}%)")
    return 0 if worst < args.target_pct / 100 else 1


if __name__ == "__main__":
    sys.exit(main())
