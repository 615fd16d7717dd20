"""The whole GPU validation in one command, inside a hard deadline (run by bench/gpu_validate.sh).

    python3 bench/gpu_validate.py --device cuda --deadline-s 480 --out "$OUT/h200-validate"
    python3 bench/gpu_validate.py --device cpu                      # rehearsal, small models

Steps run in order of value, each a subprocess given what is left of the deadline (less a reserve
for the verdict); a step that overruns is interrupted (SIGINT, then SIGKILL), and the cells a sweep
already appended stay recorded. Steps that no longer fit are marked skipped. The verdict
(verdict.json, verdict.txt) is built by bench/gpu_check.py from what exists at the end.

Into --out: nvidia-smi.txt, env.json, calibration.json, runs/<name>/ (run folders), logs/<step>.log,
bare_loop.json, telemetry_overhead.json, ddp_world_size_1.json, report-vs-cpu/ (the report against the committed CPU
run), steps.json, verdict.json, verdict.txt. Exit 0 once the verdict is written (whatever it
says), 2 on bad usage. Needs no install: the repo root goes on PYTHONPATH for every step.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import gpu_check  # noqa: E402

CPU_BASELINE = REPO / "results" / "cpu-2vcpu-quick"
VERDICT_RESERVE_S = 8.0     # kept back from every step for reading the runs and writing the verdict
INTERRUPT_GRACE_S = 10.0    # after SIGINT, before SIGKILL: a sweep closes its manifest in this time


@dataclass(frozen=True, kw_only=True)
class Step:
    """One subprocess of the validation: its name, command, the most time it may take and the
    least time worth starting it with."""

    name: str
    argv: tuple[str, ...]
    cap_s: float
    min_s: float
    stdout_to: str | None = None   # file under --out that receives stdout (else the log)
    #: Exit codes that still mean "finished": a sweep exits 1 when cells failed and honest_numbers
    #: when a ratio is off target; the verdict's checks judge those from the files.
    finished_codes: tuple[int, ...] = (0,)


def bigbench(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "bigtrain.cli", *args)


def sweep(run: str, runs_dir: Path, *args: str) -> tuple[str, ...]:
    return bigbench("sweep", *args, "--out", str(runs_dir), "--run-id", run, "--no-report")


SWEEP_FINISHED = (0, 1)   # 1: some cells did not end ok, which the status checks report


def plan(device: str, out: Path) -> list[Step]:
    """The steps, most valuable first. On the CPU the same steps with tiny models, short windows."""
    runs = out / "runs"
    gpu = device == "cuda"
    target = "cuda:0" if gpu else "cpu"
    py = sys.executable
    if gpu:
        gpt2, gpt2_batch, gpt2_prec = "transformer:gpt2-small", "16", "fp32,tf32,fp16,bf16"
        resnet, resnet_batch = "cnn:resnet50", "256"
        resnet_prec = "bf16,fp16"
        # 3 s windows: long enough for the energy check (ENERGY_MIN_WINDOW_S in gpu_check.py).
        measure = ("--warmup", "1", "--duration", "3", "--repeats", "1")
        quick_measure: tuple[str, ...] = ()          # the preset's own 0.2 s + 1 s windows
        honest_pairs = "transformer:gpt2-small/adamw/fused/bf16/16,cnn:resnet50/sgd/foreach/bf16/256"
        honest = ("--rounds", "1", "--duration", "2", "--target-pct", "3")
        # 2 s windows: the sampler's start and stop read the energy counter (~4 ms each), which
        # is 0.4% of a 2 s window but would be 0.8% of a 1 s one, too close to the 1% bound.
        overhead = ("--rounds", "3", "--window", "2.0")
        cell_timeout = "150"
        compiled_model, compiled_batch = gpt2, gpt2_batch
    else:
        # The rehearsal keeps every axis of the GPU plan (tf32/fp16 cells are skipped by the matrix
        # on a CPU, which exercises that path too) but with toy models and short windows.
        gpt2, gpt2_batch, gpt2_prec = "transformer:tiny", "4", "fp32,tf32,fp16,bf16"
        resnet, resnet_batch = "cnn:tiny", "4"
        resnet_prec = "bf16,fp16"
        measure = ("--warmup", "0.05", "--duration", "0.2", "--repeats", "1")
        quick_measure = ("--model", "mlp:small", "--optimizer", "sgd,adam", "--warmup", "0.05",
                         "--duration", "0.1")
        honest_pairs = "transformer:tiny/adamw/fused/bf16/4"
        honest = ("--rounds", "1", "--duration", "0.3", "--target-pct", "3")
        overhead = ("--rounds", "2", "--window", "0.3", "--threads", "1")
        cell_timeout = "60"
        # torch.compile's fixed cost dominates on a CPU; the fewest parameter tensors compile fastest.
        compiled_model, compiled_batch = "mlp:seed", "64"
    return [
        Step(name="nvidia-smi", argv=("nvidia-smi", "-q"), cap_s=20, min_s=1,
             stdout_to="nvidia-smi.txt"),
        Step(name="env", argv=bigbench("env", "--json"), cap_s=60, min_s=5, stdout_to="env.json"),
        # First among the measurements: the sweeps after it record % of the measured peak and the
        # optimizer step against the copy-bandwidth floor.
        Step(name="calibrate", cap_s=60, min_s=15 if gpu else 5,
             argv=bigbench("calibrate", "--device", target, "--json", "--repeats", "3"),
             stdout_to="calibration.json"),
        Step(name="gpt2", finished_codes=SWEEP_FINISHED, cap_s=150 if gpu else 120, min_s=20 if gpu else 5,
             argv=sweep("gpt2", runs, "--model", gpt2, "--optimizer", "adamw",
                        "--impl", "foreach,fused", "--batch-norm", "on", "--precision", gpt2_prec,
                        "--batch-size", gpt2_batch, "--device", target, "--compile", "off",
                        "--cell-timeout", cell_timeout, *measure)),
        Step(name="resnet50", finished_codes=SWEEP_FINISHED, cap_s=100 if gpu else 90, min_s=20 if gpu else 5,
             argv=sweep("resnet50", runs, "--model", resnet, "--optimizer", "sgd",
                        "--impl", "foreach", "--batch-norm", "on,off", "--precision", resnet_prec,
                        "--batch-size", resnet_batch, "--device", target, "--compile", "off",
                        "--cell-timeout", cell_timeout, *measure)),
        Step(name="quick", finished_codes=SWEEP_FINISHED, cap_s=120 if gpu else 120, min_s=20 if gpu else 5,
             argv=sweep("quick", runs, "--preset", "quick", "--device", target, *quick_measure)),
        Step(name="bare-loop", finished_codes=(0, 1), cap_s=120, min_s=30 if gpu else 10,
             argv=(py, str(REPO / "bench" / "honest_numbers.py"), "--device", target,
                   "--only", honest_pairs, *honest, "--json", str(out / "bare_loop.json"))),
        Step(name="telemetry-overhead", cap_s=45 if gpu else 60, min_s=15 if gpu else 5,
             argv=(py, str(REPO / "bench" / "telemetry_overhead.py"), "--device", target,
                   *overhead, "--json", str(out / "telemetry_overhead.json"))),
        Step(name="compiled", finished_codes=SWEEP_FINISHED, cap_s=150 if gpu else 120, min_s=40 if gpu else 10,
             argv=sweep("compiled", runs, "--model", compiled_model, "--optimizer", "adamw",
                        "--impl", "compiled", "--batch-norm", "on", "--precision", "bf16",
                        "--batch-size", compiled_batch, "--device", target, "--compile", "off",
                        "--cell-timeout", "140" if gpu else "55", *measure)),
        # DDP through NCCL with world size 1 (gloo in the rehearsal): one rank spawned as a
        # world_size N cell spawns its ranks; cheap (a small MLP, 1 s window), so it goes last.
        Step(name="ddp", cap_s=60, min_s=15 if gpu else 10,
             argv=(py, str(REPO / "bench" / "ddp_check.py"), "--device", target,
                   "--json", str(out / "ddp_world_size_1.json"))),
        Step(name="report", cap_s=90 if gpu else 120, min_s=15,
             argv=bigbench("report", str(runs / "quick"), str(CPU_BASELINE),
                           "--baseline", str(CPU_BASELINE), "-o", str(out / "report-vs-cpu"))),
    ]


def run_step(step: Step, out: Path, env: dict[str, str], deadline: float) -> str:
    """Run one step within min(its cap, what the deadline leaves); its outcome in a few words."""
    left_s = deadline - time.monotonic() - VERDICT_RESERVE_S
    if left_s < step.min_s:
        return f"skipped: deadline ({left_s:.0f} s left, needs {step.min_s:.0f} s)"
    if shutil.which(step.argv[0]) is None and not Path(step.argv[0]).exists():
        return f"skipped: {step.argv[0]} not found"
    limit_s = min(step.cap_s, left_s)
    log_path = out / "logs" / f"{step.name}.log"
    begin = time.monotonic()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(step.argv) + "\n")
        log.flush()
        stdout = open(out / step.stdout_to, "w") if step.stdout_to else log
        try:
            # A session of its own, so an overrun interrupts the sweep's workers too.
            process = subprocess.Popen(step.argv, cwd=REPO, env=env, stdout=stdout, stderr=log,
                                       start_new_session=True)
            try:
                rc = process.wait(timeout=limit_s)
            except subprocess.TimeoutExpired:
                _stop(process)
                return f"stopped after {time.monotonic() - begin:.0f} s (limit {limit_s:.0f} s)"
        finally:
            if stdout is not log:
                stdout.close()
    took = f"{time.monotonic() - begin:.0f} s"
    if rc == 0:
        return "ok"
    return f"ok (exit {rc}, judged by the checks)" if rc in step.finished_codes else f"exit {rc} after {took}"


def _stop(process: subprocess.Popen) -> None:
    """SIGINT to the step's process group (a sweep then marks its run interrupted), then SIGKILL."""
    for sig, wait_s in ((signal.SIGINT, INTERRUPT_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def read_records(run_dir: Path) -> list[dict]:
    """The records of a run folder's cells.jsonl; a torn last line (a killed sweep) is left out."""
    path = run_dir / "cells.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def read_json(path: Path) -> object | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def matched_cells(report_dir: Path) -> int | None:
    """Cells the report paired with the baseline: the speedup table's rows less its mean row."""
    path = report_dir / "tables" / "speedup.csv"
    if not report_dir.is_dir():
        return None
    if not path.is_file():
        return 0   # the report leaves the table out when no cell pairs
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return sum(1 for row in rows if "geometric mean" not in (row.get("model") or ""))


def power_limits(environment: object) -> dict[str, float]:
    gpus = environment.get("gpus", []) if isinstance(environment, dict) else []
    return {g.get("name"): g.get("power_limit_w") for g in gpus if g.get("power_limit_w")}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="hard limit for the whole run [default: 480 on cuda, 150 on cpu]")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for everything [default: results/<device>-validate-<time>]")
    parser.add_argument("--only", default=None,
                        help="comma-separated step names to run (the others are skipped)")
    args = parser.parse_args(argv)
    began = time.monotonic()
    deadline_s = args.deadline_s or (480.0 if args.device == "cuda" else 150.0)
    deadline = began + deadline_s
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = (args.out or REPO / "results" / f"{args.device}-validate-{stamp}").resolve()
    if (out / "verdict.json").exists() or any((out / "runs").glob("*/manifest.json")):
        # The sweeps would refuse their run ids; a fresh folder keeps each attempt whole.
        print(f"gpu_validate: error: {out} already holds a validation; pass a new --out", file=sys.stderr)
        return 2
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["BIGTRAIN_CALIBRATION_DIR"] = str(out / "calibration")
    env.setdefault("PYTHONUNBUFFERED", "1")
    only = set(args.only.split(",")) if args.only else None

    steps: dict[str, str] = {}
    for step in plan(args.device, out):
        if only is not None and step.name not in only:
            steps[step.name] = "skipped: not in --only"
            continue
        steps[step.name] = run_step(step, out, env, deadline)
        print(f"gpu_validate: {step.name}: {steps[step.name]} "
              f"({time.monotonic() - began:.0f} s of {deadline_s:.0f} s)", flush=True)
        (out / "steps.json").write_text(json.dumps(steps, indent=2) + "\n")

    runs = {name: read_records(out / "runs" / name) for name in ("gpt2", "resnet50", "quick", "compiled")
            if (out / "runs" / name).is_dir()}
    inputs = gpu_check.VerdictInputs(
        device=args.device, runs=runs, calibration=read_json(out / "calibration.json"),
        bare_loop_rows=read_json(out / "bare_loop.json"),
        telemetry_overhead=read_json(out / "telemetry_overhead.json"),
        quick_matched_cells=matched_cells(out / "report-vs-cpu"),
        power_limits_w=power_limits(read_json(out / "env.json")), steps=steps,
        run_states={name: (read_json(out / "runs" / name / "manifest.json") or {}).get("state")
                    for name in runs})
    checks = gpu_check.build_verdict(inputs)
    elapsed_s = time.monotonic() - began
    context = {"device": args.device, "deadline_s": deadline_s, "elapsed_s": round(elapsed_s, 1),
               "steps": steps, "references": gpu_check.REFERENCES}
    (out / "verdict.json").write_text(json.dumps(gpu_check.verdict_json(checks, **context), indent=2) + "\n")
    header = (f"bigtrain GPU validation on {args.device}: {elapsed_s:.0f} s of a {deadline_s:.0f} s "
              f"deadline; folder {out}")
    text = gpu_check.verdict_text(checks, header)
    (out / "verdict.txt").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
