"""Sampler overhead: training throughput with telemetry on vs off, side by side in one run.

    .venv/bin/python bench/telemetry_overhead.py                 # CPU: fake NVML (see below)
    .venv/bin/python bench/telemetry_overhead.py --device cuda:0 # GPU: real NVML

Windows with the sampler on and off alternate (off/on, then on/off, ...) so drift hits both alike;
each window counts the training steps it completes, and the sampler's start() and stop() (the edge
readings) fall inside the "on" window, so their cost is included. The script prints median
throughput of each, their ratio and the overhead in percent, plus the directly timed cost of one
sample (all cheap fields) and what fraction of a core that costs at the sampling interval.

On a shared CPU machine pass `--threads 1`: with several intra-op threads competing with other
processes, OpenMP spinning swamps both the wall time and the CPU time of every window.

On a machine without a GPU the sampler reads the fake NVML of tests/fake_nvml.py, whose calls
return at once: the number is then the cost of the sampling thread itself (Python, the GIL, the
timeline), not of real NVML calls, which take tens of microseconds each (the energy read ~4 ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_step(device: str, width: int, batch: int):
    """A small MLP training step (forward, backward, AdamW) on `device`."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, width, device=device)
    target = torch.randn(batch, width, device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x), target).backward()
        optimizer.step()

    return step


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def run_window(step, device: str, window_s: float, sampler) -> tuple[float, float]:
    """(steps per second, process CPU seconds per step) over one window; the sampler (if any)
    runs for the whole of it. CPU time per step includes the sampler thread's CPU time and is far
    less disturbed than wall time by other processes on a shared machine."""
    synchronize(device)
    cpu_begin = time.process_time()
    begin = time.perf_counter()
    if sampler is not None:
        sampler.start()
    steps = 0
    while time.perf_counter() - begin < window_s:
        step()
        steps += 1
    synchronize(device)
    if sampler is not None:
        sampler.stop()
    return steps / (time.perf_counter() - begin), (time.process_time() - cpu_begin) / steps


def sample_cost_s(sampler, calls: int = 200) -> float:
    """Median seconds of one poll of the cheap fields (what the thread does each interval)."""
    times = []
    for _ in range(calls):
        begin = time.perf_counter()
        sampler._take_sample()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    parser.add_argument("--rounds", type=int, default=8, help="on/off pairs")
    parser.add_argument("--window", type=float, default=1.5, help="seconds per window")
    parser.add_argument("--interval", type=float, default=0.1, help="sampling interval, seconds")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    import torch

    from bigtrain.measure import telemetry

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        sys.path.insert(0, str(ROOT / "tests"))
        from fake_nvml import FakeNvml

        sys.modules["pynvml"] = FakeNvml()
        telemetry._forget_nvml_state()
        nvml_kind = "fake NVML (tests/fake_nvml.py): the thread's own cost, not NVML call latency"
        sampler_device = "cuda:0"  # the fake's device; the workload runs on the CPU
        width, batch = args.width or 256, args.batch or 64
    else:
        nvml_kind = "real NVML"
        sampler_device = device
        width, batch = args.width or 4096, args.batch or 512
    sampler = telemetry.TelemetrySampler.for_device(sampler_device, interval_s=args.interval)
    if not sampler.available:
        print(f"telemetry unavailable: {sampler.unavailable_reason}", file=sys.stderr)
        return 2

    step = build_step(device, width, batch)
    run_window(step, device, min(args.window, 1.0), None)  # warm-up
    rates = {"off": [], "on": []}
    cpu_per_step = {"off": [], "on": []}
    for round_index in range(args.rounds):
        order = ("off", "on") if round_index % 2 == 0 else ("on", "off")
        for mode in order:
            rate, cpu_s = run_window(step, device, args.window, sampler if mode == "on" else None)
            rates[mode].append(rate)
            cpu_per_step[mode].append(cpu_s)
    data, _ = sampler.result(args.window, 1, 1)

    off = statistics.median(rates["off"])
    on = statistics.median(rates["on"])
    cpu_off = statistics.median(cpu_per_step["off"])
    cpu_on = statistics.median(cpu_per_step["on"])
    cost_s = sample_cost_s(sampler)
    result = {
        "device": device,
        "nvml": nvml_kind,
        "model": f"MLP {width}-{4 * width}-{width}, batch {batch}, AdamW",
        "rounds": args.rounds,
        "window_s": args.window,
        "interval_s": args.interval,
        "steps_per_s_off_median": off,
        "steps_per_s_on_median": on,
        "on_over_off": on / off,
        "overhead_pct": 100.0 * (1.0 - on / off),
        "step_time_off_ms": 1000.0 / off,
        "cpu_ms_per_step_off_median": 1000.0 * cpu_off,
        "cpu_ms_per_step_on_median": 1000.0 * cpu_on,
        "cpu_per_step_on_over_off": cpu_on / cpu_off,
        "sample_cost_us": cost_s * 1e6,
        "sample_cost_pct_of_interval": 100.0 * cost_s / args.interval,
        "samples_in_last_window": data["samples"] if data else None,
        "energy_method_in_last_window": data["energy_method"] if data else None,
        "rates_off": rates["off"],
        "rates_on": rates["on"],
    }
    print(f"device {device}; {nvml_kind}")
    print(f"workload {result['model']}; {args.rounds} rounds of {args.window} s windows, interval {args.interval} s")
    print(f"steps/s  off {off:10.2f}   on {on:10.2f}   on/off {on / off:.4f}   "
          f"overhead {result['overhead_pct']:+.2f}% (median of {args.rounds} windows each)")
    print(f"CPU ms/step off {1000 * cpu_off:8.3f}   on {1000 * cpu_on:8.3f}   on/off {cpu_on / cpu_off:.4f} "
          f"(process CPU time, median; robust to other load)")
    print(f"one sample: {result['sample_cost_us']:.1f} us = {result['sample_cost_pct_of_interval']:.3f}% "
          f"of the {args.interval} s interval (of one core)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
