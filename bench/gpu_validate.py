"""The whole GPU validation in one command, inside a hard deadline (run by bench/gpu_validate.sh).

    python3 bench/gpu_validate.py --device cuda --pack "$OUT"
    python3 bench/gpu_validate.py --device cpu                     # rehearsal, small models
    python3 bench/gpu_validate.py --budget --device cuda           # the caps vs the deadline
    python3 bench/gpu_validate.py --rebuild results/h100-validate-<time>.tar.gz   # offline

Steps run in order of value, each a subprocess given min(its cap, what is left of the deadline
less a reserve for the verdict and the archive); a step that overruns is interrupted (SIGINT, then
SIGKILL) inside its cap, and the cells a sweep already appended stay recorded. The guaranteed
steps' caps add up within the deadline (tests/test_gpu_validate.py checks it); the last two steps
run only in time left over. The verdict (verdict.json, verdict.txt) is built by bench/gpu_check.py
from what exists at the end.

Into --out: nvidia-smi.txt, calibration.json, runs/<name>/ (run folders), logs/<step>.log,
micro.json, bare_loop.json, telemetry_overhead.json, ddp_world_size_1.json, steps.json,
verdict.json, verdict.txt. With --pack DIR: DIR/<tag>-validate-<time>.tar.gz (that whole folder,
under 15 MiB) and a copy of verdict.txt and verdict.json, checked against the device's return
limits (8 files, 16 MiB each, 64 MiB in all, two folders deep, names of [A-Za-z0-9._-]). --rebuild
unpacks such an archive into results/, builds the quick run's report against the committed CPU run
(report-vs-cpu/) and writes verdict-offline.{json,txt} with the pairing check. Exit 0 once the
verdict is written (whatever it says), 1 if the pack breaks the return limits, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import gpu_check  # noqa: E402

CPU_BASELINE = REPO / "results" / "cpu-2vcpu-quick"
VERDICT_RESERVE_S = 15.0    # kept back from the steps for the verdict and the archive
INTERRUPT_GRACE_S = 6.0     # after SIGINT, before SIGKILL: a sweep closes its manifest in this time
KILL_WAIT_S = 2.0
#: An overrunning step is stopped this long before its cap, so cap_s is all it can take.
STOP_GRACE_S = INTERRUPT_GRACE_S + KILL_WAIT_S
DEFAULT_DEADLINE_S = {"cuda": 420.0, "cpu": 900.0}
#: torch.compile's artefacts live in a git-ignored folder of the checkout: on a device machine that
#: is still warm, a rerun finds the Inductor cache of the first run (its compile step then takes
#: seconds, not a cold compile). The archive does not carry it (tens of MB of kernels).
INDUCTOR_CACHE = REPO / ".cache" / "inductor"


@dataclass(frozen=True, kw_only=True)
class Step:
    """One subprocess of the validation: its name, command, the most time it may take (stop
    included) and the least time worth starting it with. A step that is not `guaranteed` runs only
    in the time the guaranteed steps left over; the guaranteed caps add up within the deadline."""

    name: str
    argv: tuple[str, ...]
    cap_s: float
    min_s: float
    stdout_to: str | None = None   # file under --out that receives stdout (else the log)
    #: Exit codes that still mean "finished": a sweep exits 1 when cells failed and honest_numbers
    #: when a ratio is off target; the verdict's checks judge those from the files.
    finished_codes: tuple[int, ...] = (0,)
    guaranteed: bool = True
    env: tuple[tuple[str, str], ...] = ()


def bigbench(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "bigtrain.cli", *args)


def sweep(run: str, runs_dir: Path, *args: str) -> tuple[str, ...]:
    return bigbench("sweep", *args, "--out", str(runs_dir), "--run-id", run, "--no-report")


SWEEP_FINISHED = (0, 1)   # 1: some cells did not end ok, which the status checks report


def has_axis(name: str) -> bool:
    """Whether this checkout's axis table has `name` (issue 26's `checkpointing` lands apart)."""
    from bigtrain.cells.axes import AXIS_BY_NAME

    return name in AXIS_BY_NAME


def fit_steps(device: str, runs: Path, caps: Mapping[str, float]) -> list[Step]:
    """`bigbench fit` (issue 26): the largest batch of GPT-2 medium and Llama 1B with and without
    activation checkpointing, fp32 against bf16, against the GPU's real memory (a real CUDA
    out-of-memory ends each probe too large, in a worker that is then replaced). Run only in time
    left over, or alone with `--only fit-gpt2-medium,fit-llama-1b`. Bounded: a coarse doubling
    (--max-probes 4 from a batch known to be small) with half-second windows, one search after
    another, so a step stopped at its cap keeps whole answers. On the CPU the same plumbing with
    toy models under a stated --memory-budget."""
    import importlib.util

    gpu = device == "cuda"
    impl = "fused" if gpu else "foreach"
    checkpointing = ("--checkpointing", "off,on") if has_axis("checkpointing") else ()
    measure = ("--warmup", "0", "--duration", "0.5", "--min-steps", "2", "--cell-timeout",
               "90" if gpu else "60", "--no-report")
    if gpu:
        models = (("fit-gpt2-medium", "transformer:gpt2-medium", ("--batch-min", "8")),
                  ("fit-llama-1b", "hf:llama-1b", ("--batch-min", "2")))
        where = ("--device", "cuda:0", "--precision", "fp32,bf16", "--max-probes", "4",
                 "--batch-max", "512")
    else:
        models = (("fit-gpt2-medium", "transformer:tiny", ("--batch-min", "1")),
                  ("fit-llama-1b", "hf:llama-tiny", ("--batch-min", "1")))
        # fp32 only: bf16 autocast on a CPU without AVX-512 BF16 is seconds a step
        # one probe and the answer measured again: two fresh workers, the plumbing only
        where = ("--device", "cpu", "--precision", "fp32", "--max-probes", "1", "--batch-max", "1",
                 "--memory-budget", "4GiB")
    steps = []
    for name, model, start in models:
        if model.startswith("hf:") and importlib.util.find_spec("transformers") is None:
            continue  # the hf family needs the models extra; the log of the run says it is absent
        steps.append(Step(
            name=name, cap_s=caps[name], min_s=40 if gpu else 20, guaranteed=False,
            finished_codes=SWEEP_FINISHED,
            argv=bigbench("fit", "--model", model, "--optimizer", "adamw", "--impl", impl,
                          *where, *start, *checkpointing, *measure,
                          "--out", str(runs), "--run-id", name)))
    return steps


def plan(device: str, out: Path) -> list[Step]:
    """The steps, most valuable first. On the CPU the same steps with tiny models, short windows.

    Budget on a GPU (seconds, each cap including the process start of ~10-12 s per CUDA process,
    and a sweep has two: the command and its worker): see `budget_table`; the quick preset and the
    world-size-1 DDP check are the two steps that run only in time left over. The report against
    the CPU run is not a device step: it is rebuilt offline from the archive (--rebuild)."""
    runs = out / "runs"
    gpu = device == "cuda"
    target = "cuda:0" if gpu else "cpu"
    py = sys.executable
    if gpu:
        gpt2, gpt2_batch, gpt2_prec = "transformer:gpt2-small", "16", "fp32,tf32,fp16,bf16"
        resnet, resnet_batch, resnet_prec = "cnn:resnet50", "256", "bf16,fp16"
        # 3 s windows: long enough for the energy check (ENERGY_MIN_WINDOW_S in gpu_check.py).
        measure = ("--warmup", "1", "--duration", "3", "--repeats", "1")
        short = ("--warmup", "0.5", "--duration", "1", "--repeats", "1")
        quick_measure: tuple[str, ...] = ("--warmup", "0.1", "--duration", "1")
        honest_pairs = "transformer:gpt2-small/adamw/fused/bf16/16"
        honest = ("--rounds", "1", "--duration", "2", "--target-pct", "3")
        # 2 s windows: the sampler's start and stop read the energy counter (~4 ms each), which
        # is 0.4% of a 2 s window but would be 0.8% of a 1 s one, too close to the 1% bound.
        overhead = ("--rounds", "2", "--window", "2.0")
        cell_timeout = "90"
        compiled_model, compiled_batch, compiled_prec = gpt2, gpt2_batch, "bf16"
        calibrate: tuple[str, ...] = ("--repeats", "3")
        caps = {"nvidia-smi": 10, "calibrate": 30, "gpt2": 75, "micro": 30, "graphs": 30,
                "resnet50": 55, "bare-loop": 45, "compiled": 95, "telemetry-overhead": 25,
                "quick": 90, "ddp": 35, "profile": 45, "fit-gpt2-medium": 120,
                "fit-llama-1b": 120}
    else:
        # The rehearsal keeps every axis of the GPU plan (tf32/fp16 and CUDA-graph cells are
        # skipped by the matrix on a CPU, which exercises that path too) with toy models.
        # No bf16 here either (see resnet_prec); tf32 and fp16 are skipped by the matrix.
        gpt2, gpt2_batch, gpt2_prec = "transformer:tiny", "4", "fp32,tf32,fp16"
        # fp32: a bf16 convolution on a CPU without AVX-512 BF16 takes seconds a step (measured
        # 2 s on this box); fp16 stays, skipped by the matrix as on the GPU plan's other axes.
        resnet, resnet_batch, resnet_prec = "cnn:tiny", "4", "fp32,fp16"
        measure = ("--warmup", "0.05", "--duration", "0.2", "--repeats", "1")
        short = measure
        quick_measure = ("--model", "mlp:small", "--optimizer", "sgd,adam", "--precision", "fp32",
                         "--warmup", "0.05", "--duration", "0.1")
        honest_pairs = "mlp:seed/adamw/fused/fp32"   # two fresh processes: the cheapest pair
        honest = ("--rounds", "1", "--duration", "0.3", "--target-pct", "3")
        overhead = ("--rounds", "2", "--window", "0.3", "--threads", "1")
        cell_timeout = "60"
        # torch.compile's fixed cost dominates on a CPU: the smallest model compiles fastest.
        # fp32: Inductor's C++ code for bf16 autocast on a CPU compiles for minutes on a loaded box.
        compiled_model, compiled_batch, compiled_prec = "mlp:seed", "64", "fp32"
        calibrate = ("--sizes", "256", "--repeats", "1")   # the plumbing, not the CPU's peak
        # Caps for the shared 2-core box at load 4-20, where a Python process with torch takes
        # 5-20 s to start and a sweep starts two: the rehearsal proves the plumbing, its times are
        # not the device's (measured: one mlp:seed cell took 35 s as a sweep at load 17).
        caps = {"nvidia-smi": 10, "calibrate": 45, "gpt2": 120, "micro": 60, "graphs": 60,
                "resnet50": 90, "bare-loop": 90, "compiled": 180, "telemetry-overhead": 60,
                "quick": 90, "ddp": 60, "profile": 90, "fit-gpt2-medium": 90,
                "fit-llama-1b": 120}
    mins = {"nvidia-smi": 1, "calibrate": 10, "gpt2": 20, "micro": 10, "graphs": 10, "resnet50": 20,
            "bare-loop": 20, "compiled": 40, "telemetry-overhead": 10, "quick": 30, "ddp": 20,
            "profile": 20}

    def step(name: str, argv: tuple[str, ...], **kwargs) -> Step:
        return Step(name=name, argv=argv, cap_s=caps[name], min_s=mins[name], **kwargs)

    return [
        step("nvidia-smi", ("nvidia-smi", "-q"), stdout_to="nvidia-smi.txt"),
        # First among the measurements: the sweeps after it record % of the measured peak and the
        # optimizer step against the copy-bandwidth floor.
        step("calibrate", bigbench("calibrate", "--device", target, "--json", *calibrate),
             stdout_to="calibration.json"),
        step("gpt2", sweep("gpt2", runs, "--model", gpt2, "--optimizer", "adamw",
                           "--impl", "foreach,fused", "--batch-norm", "on",
                           "--precision", gpt2_prec, "--batch-size", gpt2_batch,
                           "--device", target, "--compile", "off", "--cell-timeout", cell_timeout,
                           *measure), finished_codes=SWEEP_FINISHED),
        # Adam for-loop / foreach / fused step() alone, and the clock check on a planted fault.
        step("micro", (py, str(REPO / "bench" / "gpu_micro.py"), "--device", device,
                       "--json", str(out / "micro.json"))),
        # The launch-bound case: the seed MLP eager vs replayed as a CUDA graph (~20x).
        step("graphs", sweep("graphs", runs, "--model", "mlp:seed", "--optimizer", "sgd",
                             "--impl", "foreach", "--batch-norm", "on", "--precision", "fp32",
                             "--device", target, "--compile", "off", "--cuda-graphs", "off,on",
                             "--cell-timeout", cell_timeout, *short), finished_codes=SWEEP_FINISHED),
        step("resnet50", sweep("resnet50", runs, "--model", resnet, "--optimizer", "sgd",
                               "--impl", "foreach", "--batch-norm", "on,off", "--precision", resnet_prec,
                               "--batch-size", resnet_batch, "--device", target, "--compile", "off",
                               "--cell-timeout", cell_timeout, *measure), finished_codes=SWEEP_FINISHED),
        step("bare-loop", (py, str(REPO / "bench" / "honest_numbers.py"), "--device", target,
                           "--only", honest_pairs, *honest, "--json", str(out / "bare_loop.json")),
             finished_codes=(0, 1)),
        step("telemetry-overhead", (py, str(REPO / "bench" / "telemetry_overhead.py"), "--device", target,
                                    *overhead, "--json", str(out / "telemetry_overhead.json"))),
        # The compiled MODEL with fused AdamW, like the 421k tokens/s reference. A cold Inductor
        # cache makes this the one step whose cost is mostly compilation (its cap is budgeted for
        # that); INDUCTOR_CACHE keeps the artefacts for a rerun on the same warm machine.
        step("compiled", sweep("compiled", runs, "--model", compiled_model, "--optimizer", "adamw",
                               "--impl", "fused", "--batch-norm", "on", "--precision", compiled_prec,
                               "--batch-size", compiled_batch, "--device", target, "--compile", "on",
                               "--cell-timeout", str(caps["compiled"] - 15), *measure),
             finished_codes=SWEEP_FINISHED),
        # Only in time left over: the quick preset (pairs with the committed CPU run; the report
        # is rebuilt offline) and DDP through NCCL with world size 1 (gloo in the rehearsal).
        step("quick", sweep("quick", runs, "--preset", "quick", "--device", target, *quick_measure),
             finished_codes=SWEEP_FINISHED, guaranteed=False),
        step("ddp", (py, str(REPO / "bench" / "ddp_check.py"), "--device", target,
                     "--json", str(out / "ddp_world_size_1.json")), guaranteed=False),
        # Issue 24: profiled cells (CUDA activities, device time per op, kernel launches, the
        # memory snapshot and its HTML timeline); for-loop vs fused Adam, BN on vs off.
        step("profile", bigbench("profile", "--model", "mlp:small", "--optimizer", "adam",
                                 "--impl", "forloop,fused", "--batch-norm", "off,on",
                                 "--precision", "fp32", "--device", target, "--compile", "off",
                                 "--profile-steps", "3", "--cell-timeout", cell_timeout, *short,
                                 "--out", str(runs), "--run-id", "profile", "--no-report"),
             finished_codes=SWEEP_FINISHED, guaranteed=False),
        # Last, in time left over (or alone with --only): the largest batch that fits.
        *fit_steps(device, runs, caps),
    ]


def budget_problems(steps: Sequence[Step], deadline_s: float) -> list[str]:
    """Why `steps` cannot all finish inside `deadline_s`; [] when the guaranteed caps fit."""
    problems = []
    guaranteed_s = sum(s.cap_s for s in steps if s.guaranteed)
    if guaranteed_s + VERDICT_RESERVE_S > deadline_s:
        problems.append(f"guaranteed step caps {guaranteed_s:.0f} s + verdict reserve "
                        f"{VERDICT_RESERVE_S:.0f} s exceed the {deadline_s:.0f} s deadline")
    for step in steps:
        if step.min_s > step.cap_s:
            problems.append(f"step {step.name}: min_s {step.min_s} above its cap {step.cap_s}")
        if step.cap_s <= STOP_GRACE_S:
            problems.append(f"step {step.name}: cap {step.cap_s} s leaves nothing after the "
                            f"{STOP_GRACE_S:.0f} s stop grace")
    return problems


def budget_table(steps: Sequence[Step], deadline_s: float) -> str:
    """A Markdown table of the caps and where each step starts at the latest."""
    rows = ["| step | cap s | guaranteed | latest end s |", "| --- | ---: | --- | ---: |"]
    end_s = 0.0
    for step in steps:
        if step.guaranteed:
            end_s += step.cap_s
        rows.append(f"| {step.name} | {step.cap_s:.0f} | {'yes' if step.guaranteed else 'if time is left'} | "
                    f"{end_s:.0f} |" if step.guaranteed else
                    f"| {step.name} | {step.cap_s:.0f} | if time is left | - |")
    rows.append(f"| verdict + archive | {VERDICT_RESERVE_S:.0f} | yes | {end_s + VERDICT_RESERVE_S:.0f} |")
    rows.append(f"| **deadline** | {deadline_s:.0f} | | |")
    return "\n".join(rows) + "\n"


def run_step(step: Step, out: Path, env: dict[str, str], deadline: float) -> tuple[str, float]:
    """Run one step within min(its cap, what the deadline leaves); (its outcome in a few words,
    seconds it took)."""
    left_s = deadline - time.monotonic() - VERDICT_RESERVE_S
    if left_s < step.min_s:
        return f"skipped: deadline ({left_s:.0f} s left, needs {step.min_s:.0f} s)", 0.0
    if shutil.which(step.argv[0]) is None and not Path(step.argv[0]).exists():
        return f"skipped: {step.argv[0]} not found", 0.0
    limit_s = min(step.cap_s, left_s)
    log_path = out / "logs" / f"{step.name}.log"
    begin = time.monotonic()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(step.argv) + "\n")
        log.flush()
        stdout = open(out / step.stdout_to, "w") if step.stdout_to else log
        try:
            # A session of its own, so an overrun interrupts the sweep's workers too.
            process = subprocess.Popen(step.argv, cwd=REPO, env={**env, **dict(step.env)}, stdout=stdout,
                                       stderr=log, start_new_session=True)
            try:
                rc = process.wait(timeout=max(1.0, limit_s - STOP_GRACE_S))
            except subprocess.TimeoutExpired:
                _stop(process)
                took_s = time.monotonic() - begin
                return f"stopped after {took_s:.0f} s (limit {limit_s:.0f} s)", took_s
            except BaseException:   # interrupted ourselves: the step's own session goes too
                _stop(process)
                raise
        finally:
            if stdout is not log:
                stdout.close()
    took_s = time.monotonic() - begin
    if rc == 0:
        return "ok", took_s
    outcome = (f"ok (exit {rc}, judged by the checks)" if rc in step.finished_codes
               else f"exit {rc} after {took_s:.0f} s")
    return outcome, took_s


def _stop(process: subprocess.Popen) -> None:
    """SIGINT to the step's process group (a sweep then marks its run interrupted), then SIGKILL."""
    for sig, wait_s in ((signal.SIGINT, INTERRUPT_GRACE_S), (signal.SIGKILL, KILL_WAIT_S)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


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


RUN_NAMES = ("gpt2", "graphs", "resnet50", "compiled", "quick", "profile")


def power_limits(manifests: Sequence[object]) -> dict[str, float]:
    """GPU name -> power limit (W), from the runs' environment fingerprints."""
    limits: dict[str, float] = {}
    for manifest in manifests:
        environment = manifest.get("environment", {}) if isinstance(manifest, dict) else {}
        for gpu in environment.get("gpus", []) or []:
            if isinstance(gpu, dict) and gpu.get("name") and gpu.get("power_limit_w"):
                limits[gpu["name"]] = gpu["power_limit_w"]
    return limits


def write_verdict(out: Path, *, device: str, steps: Mapping[str, str], step_seconds: Mapping[str, float],
                  deadline_s: float, elapsed_s: float, stem: str = "verdict") -> str:
    """Read what exists in the validation folder `out`, write <stem>.json and <stem>.txt, return
    the text. The same function runs on the device and offline (--rebuild)."""
    runs = {name: read_records(out / "runs" / name) for name in RUN_NAMES if (out / "runs" / name).is_dir()}
    manifests = {name: read_json(out / "runs" / name / "manifest.json") or {} for name in runs}
    inputs = gpu_check.VerdictInputs(
        device=device, runs=runs, calibration=read_json(out / "calibration.json"),
        bare_loop_rows=read_json(out / "bare_loop.json"),
        telemetry_overhead=read_json(out / "telemetry_overhead.json"),
        quick_matched_cells=matched_cells(out / "report-vs-cpu"),
        micro=read_json(out / "micro.json"),
        power_limits_w=power_limits(list(manifests.values())), steps=steps,
        run_states={name: manifest.get("state") for name, manifest in manifests.items()})
    checks = [*gpu_check.build_verdict(inputs), check_profiles(out / "runs" / "profile", device)]
    context = {"device": device, "deadline_s": deadline_s, "elapsed_s": round(elapsed_s, 1),
               "steps": dict(steps), "step_seconds": {k: round(v, 1) for k, v in step_seconds.items()},
               "references": gpu_check.REFERENCES}
    (out / f"{stem}.json").write_text(json.dumps(gpu_check.verdict_json(checks, **context), indent=2) + "\n")
    header = (f"bigtrain GPU validation on {device}: {elapsed_s:.0f} s of a {deadline_s:.0f} s "
              f"deadline; folder {out.name}")
    text = gpu_check.verdict_text(checks, header)
    (out / f"{stem}.txt").write_text(text)
    return text


def check_profiles(run_dir: Path, device: str) -> gpu_check.Check:
    """The `profile` step's folders: each cell's summary and trace read back; on CUDA, device time
    per op, kernel launches counted and the memory snapshot with its HTML timeline written."""
    import gzip

    name, bound = "profiled cells", ("every summary and trace readable" + (
        "; device time, kernels, memory snapshot and timeline" if device == "cuda" else ""))
    summaries = sorted((run_dir / "profiles").glob("*/summary.json"))
    if not summaries:
        return gpu_check.Check(name=name, status=gpu_check.SKIPPED, figure="no profile",
                               bound=bound, detail=f"nothing under {run_dir.name}/profiles")
    problems = []
    for path in summaries:
        summary = read_json(path)
        if not isinstance(summary, dict):
            problems.append(f"{path.parent.name}: summary.json unreadable")
            continue
        trace = path.parent / str(summary.get("trace") or "trace.json.gz")
        try:
            with gzip.open(trace, "rt", encoding="utf-8") as handle:
                events = json.load(handle).get("traceEvents") or []
        except (OSError, ValueError, EOFError) as exc:
            problems.append(f"{path.parent.name}: trace unreadable: {exc}")
            continue
        if not any(str(e.get("name")) == "## optimizer ##" for e in events):
            problems.append(f"{path.parent.name}: no optimizer phase range in the trace")
        if device == "cuda":
            if summary.get("time_basis") != "device" or not summary.get("device_kernels_per_step"):
                problems.append(f"{path.parent.name}: no device time or kernel launches")
            for key in ("memory_snapshot", "memory_timeline"):
                if not summary.get(key) or not (path.parent / str(summary[key])).is_file():
                    problems.append(f"{path.parent.name}: no {key}")
    status = gpu_check.FAIL if problems else gpu_check.PASS
    return gpu_check.Check(name=name, status=status, figure=f"{len(summaries)} cell(s)",
                           bound=bound, detail="; ".join(problems[:4]))


def gpu_tag(out: Path, device: str) -> str:
    """h100, h200, ... from the GPU's name (the runs' manifests, else nvidia-smi -q); cpu for the
    rehearsal. Names the archive, so the offline folder is results/<tag>-validate-<time>."""
    if device != "cuda":
        return "cpu"
    names = [gpu.get("name", "") for name in RUN_NAMES
             for gpu in ((read_json(out / "runs" / name / "manifest.json") or {}).get("environment") or {}).get("gpus", [])
             if isinstance(gpu, dict)]
    smi = out / "nvidia-smi.txt"
    if smi.is_file():
        names += [line.split(":", 1)[1] for line in smi.read_text(errors="replace").splitlines()
                  if line.strip().startswith("Product Name")]
    for name in names:
        match = re.search(r"\b([A-Z]\d{2,4})\b", str(name))
        if match:
            return match.group(1).lower()
    return "gpu"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="hard limit for the whole run [default: 420 on cuda, 900 on cpu]")
    parser.add_argument("--out", type=Path, default=None,
                        help="work folder [default: results/<device>-validate-<time>]")
    parser.add_argument("--pack", type=Path, default=None,
                        help="also write <tag>-validate-<time>.tar.gz, verdict.txt and verdict.json "
                             "here, within the device's return limits (pass $OUT)")
    parser.add_argument("--only", default=None,
                        help="comma-separated step names to run (the others are skipped)")
    parser.add_argument("--rebuild", type=Path, default=None, metavar="ARCHIVE|FOLDER",
                        help="offline, on any box: unpack a returned archive into results/ and "
                             "rebuild the report against the CPU run and the verdict")
    parser.add_argument("--budget", action="store_true", help="print the plan's budget table and exit")
    args = parser.parse_args(argv)
    # `timeout` (and the device's limit) sends SIGTERM: stop the running step's group, as on ^C.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    deadline_s = args.deadline_s or DEFAULT_DEADLINE_S[args.device]
    if args.budget:
        steps = plan(args.device, Path("out"))
        print(budget_table(steps, deadline_s), end="")
        problems = budget_problems(steps, deadline_s)
        for problem in problems:
            print(f"gpu_validate: budget: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if args.rebuild is not None:
        return rebuild(args.rebuild)
    began = time.monotonic()
    deadline = began + deadline_s
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = (args.out or REPO / "results" / f"{args.device}-validate-{stamp}").resolve()
    if (out / "verdict.json").exists() or any((out / "runs").glob("*/manifest.json")):
        # The sweeps would refuse their run ids; a fresh folder keeps each attempt whole.
        print(f"gpu_validate: error: {out} already holds a validation; pass a new --out", file=sys.stderr)
        return 2
    if args.pack is not None:
        args.pack.mkdir(parents=True, exist_ok=True)
        if any(args.pack.iterdir()):
            print(f"gpu_validate: error: --pack {args.pack} is not empty", file=sys.stderr)
            return 2
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["BIGTRAIN_CALIBRATION_DIR"] = str(out / "calibration")
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(INDUCTOR_CACHE))
    env.setdefault("PYTHONUNBUFFERED", "1")
    only = set(args.only.split(",")) if args.only else None

    steps: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for step in plan(args.device, out):
        if only is not None and step.name not in only:
            steps[step.name] = "skipped: not in --only"
            continue
        steps[step.name], seconds[step.name] = run_step(step, out, env, deadline)
        print(f"gpu_validate: {step.name}: {steps[step.name]} "
              f"({time.monotonic() - began:.0f} s of {deadline_s:.0f} s)", flush=True)
        (out / "steps.json").write_text(json.dumps({"steps": steps, "step_seconds": seconds}, indent=2) + "\n")

    text = write_verdict(out, device=args.device, steps=steps, step_seconds=seconds,
                         deadline_s=deadline_s, elapsed_s=time.monotonic() - began)
    print(text, end="")
    if args.pack is not None:
        problems = pack(out, args.pack, f"{gpu_tag(out, args.device)}-validate-{stamp}")
        for problem in problems:
            print(f"gpu_validate: PACK PROBLEM: {problem}", file=sys.stderr)
        if problems:
            return 1
    return 0


# -- bringing it back ------------------------------------------------------------------------------
#: What the device machine returns from $OUT (its documented limits).
RETURN_MAX_FILES = 8
RETURN_MAX_FILE_BYTES = 16 * 1024 * 1024
RETURN_MAX_TOTAL_BYTES = 64 * 1024 * 1024
RETURN_MAX_FOLDERS = 2                       # $OUT/a/b/file at the deepest
RETURN_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
#: The archive stays this far under the per-file limit; the largest files are left out past it.
ARCHIVE_BUDGET_BYTES = 15 * 1024 * 1024
#: Never left out of the archive: what the verdict and the offline rebuild read.
ESSENTIAL = re.compile(r"(^|/)(verdict\.(json|txt)|steps\.json|manifest\.json|cells\.jsonl|"
                       r"calibration\.json|micro\.json|bare_loop\.json|telemetry_overhead\.json|"
                       r"ddp_world_size_1\.json)$")


def returnable_problems(folder: Path) -> list[str]:
    """Why the device would not return everything under `folder` (its $OUT); [] when it would."""
    problems = []
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        bad = [part for part in rel.parts if not RETURN_NAME.match(part)]
        if bad:
            problems.append(f"{rel}: name {bad[0]!r} has characters other than letters, digits, . _ -")
        if path.is_symlink():
            problems.append(f"{rel}: a link")
        elif path.is_file():
            files.append(path)
            if len(rel.parts) - 1 > RETURN_MAX_FOLDERS:
                problems.append(f"{rel}: {len(rel.parts) - 1} folders deep (at most {RETURN_MAX_FOLDERS})")
            if path.stat().st_size > RETURN_MAX_FILE_BYTES:
                problems.append(f"{rel}: {path.stat().st_size} bytes (at most {RETURN_MAX_FILE_BYTES})")
        elif not path.is_dir():
            problems.append(f"{rel}: not a plain file")
    if len(files) > RETURN_MAX_FILES:
        problems.append(f"{len(files)} files (at most {RETURN_MAX_FILES})")
    total = sum(p.stat().st_size for p in files)
    if total > RETURN_MAX_TOTAL_BYTES:
        problems.append(f"{total} bytes in all (at most {RETURN_MAX_TOTAL_BYTES})")
    return problems


def pack(out: Path, dest: Path, name: str) -> list[str]:
    """Write dest/<name>.tar.gz (the whole work folder as <name>/), verdict.txt and verdict.json
    beside it; return what breaks the device's return limits ([] when nothing does). Past
    ARCHIVE_BUDGET_BYTES the largest non-essential files are left out, named in left_out.txt."""
    # A run's .lock is the writer's, not data (results/**/.lock is git-ignored too).
    members = sorted(p for p in out.rglob("*") if p.is_file() and not p.is_symlink() and p.name != ".lock")
    left_out: list[Path] = []
    archive = dest / f"{name}.tar.gz"
    while True:
        with tarfile.open(archive, "w:gz", compresslevel=9) as tar:
            for path in members:
                if path not in left_out:
                    tar.add(path, arcname=f"{name}/{path.relative_to(out)}", recursive=False)
            if left_out:
                note = "".join(f"{p.relative_to(out)} {p.stat().st_size} bytes\n" for p in left_out).encode()
                info = tarfile.TarInfo(f"{name}/left_out.txt")
                info.size = len(note)
                tar.addfile(info, io.BytesIO(note))
        if archive.stat().st_size <= ARCHIVE_BUDGET_BYTES:
            break
        candidates = [p for p in members if p not in left_out and not ESSENTIAL.search(str(p.relative_to(out)))]
        if not candidates:
            break
        left_out.append(max(candidates, key=lambda p: p.stat().st_size))
    for stem in ("verdict.txt", "verdict.json"):
        if (out / stem).is_file():
            shutil.copyfile(out / stem, dest / stem)
    problems = returnable_problems(dest)
    print(f"gpu_validate: packed {archive.name} ({archive.stat().st_size / 1e6:.2f} MB, "
          f"{len(members) - len(left_out)} files, {len(left_out)} left out) into {dest}", flush=True)
    return problems


def rebuild(source: Path, results: Path = REPO / "results") -> int:
    """Offline: unpack a returned archive into `results` (or take an unpacked folder), build the
    quick run's report against the committed CPU run, then the verdict again (verdict-offline.*,
    beside the device's own verdict, which stays as it came)."""
    source = source.resolve()
    if source.is_file():
        try:
            with tarfile.open(source, "r:gz") as tar:
                tops = {Path(m.name).parts[0] for m in tar.getmembers() if m.name}
                if len(tops) != 1 or not RETURN_NAME.match(next(iter(tops))) or next(iter(tops)) in (".", ".."):
                    print(f"gpu_validate: error: {source}: expected one top folder, found {sorted(tops)[:5]}",
                          file=sys.stderr)
                    return 2
                folder = results / next(iter(tops))
                if folder.exists():
                    print(f"gpu_validate: error: {folder} already exists; remove it or pass the folder",
                          file=sys.stderr)
                    return 2
                tar.extractall(results, filter="data")   # refuses links and paths outside results
        except (tarfile.TarError, OSError) as exc:
            print(f"gpu_validate: error: {source}: cannot unpack: {exc}", file=sys.stderr)
            return 2
    elif source.is_dir():
        folder = source
    else:
        print(f"gpu_validate: error: {source}: no such archive or folder", file=sys.stderr)
        return 2
    recorded = read_json(folder / "verdict.json")
    if not isinstance(recorded, dict):
        print(f"gpu_validate: error: {folder}/verdict.json: missing or not JSON", file=sys.stderr)
        return 2
    device = str(recorded.get("device", "cuda"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    report_dir = folder / "report-vs-cpu"
    if (folder / "runs" / "quick" / "cells.jsonl").is_file() and not report_dir.exists():
        with open(folder / "logs" / "report-offline.log", "w") as log:
            subprocess.run(bigbench("report", str(folder / "runs" / "quick"), str(CPU_BASELINE),
                                    "--baseline", str(CPU_BASELINE), "-o", str(report_dir)),
                           cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    text = write_verdict(folder, device=device, steps=recorded.get("steps") or {},
                         step_seconds=recorded.get("step_seconds") or {},
                         deadline_s=float(recorded.get("deadline_s") or 0),
                         elapsed_s=float(recorded.get("elapsed_s") or 0), stem="verdict-offline")
    print(text, end="")
    print(f"gpu_validate: rebuilt {folder} (report: {report_dir if report_dir.exists() else 'no quick run'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
