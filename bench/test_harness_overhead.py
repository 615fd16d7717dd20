"""pytest-benchmark: what the measuring harness itself costs per step.

The step loop times every step in three phases, so each step pays for three timestamps (a
perf_counter on the CPU, a recorded CUDA event on a GPU) and the loop's own bookkeeping. Here the
"training step" does nothing but call the phase marks, so the time per step is the harness alone;
the bare loop beside it is the floor. Compare the two medians (per 1000 steps) to read the overhead.

    .venv/bin/pytest bench/test_harness_overhead.py --benchmark-only
"""

from __future__ import annotations

import torch

from bigtrain.cells.settings import StepTimeSettings
from bigtrain.measure.step_loop import measure_window

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
STEPS = 1000
LOSS = torch.zeros((), device=DEVICE)


def _empty_step(mark=lambda: None) -> torch.Tensor:  # noqa: ANN001 - TrainingStep's shape
    mark()  # after the forward
    mark()  # after the backward
    return LOSS


def test_harness_window_per_1000_steps(benchmark):
    settings = StepTimeSettings(warmup_s=0.0, duration_s=1e-9, min_steps=STEPS)
    benchmark.group = f"harness overhead ({DEVICE.type}, per {STEPS} steps)"
    benchmark.extra_info.update(steps=STEPS, device=DEVICE.type)

    def window() -> None:
        totals = measure_window(_empty_step, DEVICE, settings).step_times_s
        assert len(totals) == STEPS

    benchmark(window)


def test_bare_loop_per_1000_steps(benchmark):
    benchmark.group = f"harness overhead ({DEVICE.type}, per {STEPS} steps)"
    benchmark.extra_info.update(steps=STEPS, device=DEVICE.type)

    def loop() -> None:
        for _ in range(STEPS):
            _empty_step()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)

    benchmark(loop)
