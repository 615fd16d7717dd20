"""The training step and the measured loop: warm up, synchronize, time, synchronize.

Inside the timed window only the training step runs, plus one timestamp (perf_counter on the CPU,
a recorded CUDA event on a GPU) at each phase boundary. Nothing synchronizes the GPU inside the
window; losses are read and statistics computed after it closes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bigtrain.precision import PrecisionRecipe
from bigtrain.workloads.base import Workload

#: Warm-up stops early only when step time has settled to within this fraction.
SETTLE_TOLERANCE = 0.10
#: Warm-up may run this many times its budget while step time is still moving, then gives up.
WARMUP_CAP_FACTOR = 3.0
MIN_WARMUP_STEPS = 2


@dataclass(frozen=True, kw_only=True)
class LoopSettings:
    """Time budgets for one cell."""

    warmup_s: float
    duration_s: float
    min_steps: int


@dataclass(frozen=True, kw_only=True)
class LoopResult:
    """Raw figures from one measured window."""

    step_times_s: tuple[float, ...]
    forward_s: tuple[float, ...]
    backward_s: tuple[float, ...]
    optimizer_s: tuple[float, ...]
    warmup_steps: int
    warmup_s: float
    warmup_settled: bool
    window_s: float
    loss_first: float
    loss_last: float


class TrainingStep:
    """One training step of a workload, with a hook at each phase boundary.

    Phases: forward (autocast forward and loss), backward (scaled backward), optimizer
    (step, scaler update, zero_grad).
    """

    def __init__(
        self,
        workload: Workload,
        optimizer: torch.optim.Optimizer,
        optimizer_step: Callable[[], Any],
        recipe: PrecisionRecipe,
        device: torch.device,
    ) -> None:
        self.workload = workload
        self.optimizer = optimizer
        self.optimizer_step = optimizer_step
        self.device_type = device.type
        self.autocast = lambda: recipe.autocast(device.type)
        self.scaler = recipe.make_scaler(device.type)

    def __call__(self, mark: Callable[[], None] = lambda: None) -> torch.Tensor:
        """Run one step; `mark()` is called after the forward and after the backward pass."""
        with self.autocast():
            loss = self.workload.forward_loss()
        mark()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        mark()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer_step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss


class _Clock:
    """Timestamps for the window: perf_counter on the CPU, CUDA events on a GPU.

    CUDA events are created before the window opens (`reserve`), so the window only records
    them; more are created only if the window runs longer than the warm-up rate predicted.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []
        self._pool: list[Any] = []

    def reserve(self, marks: int) -> None:
        if self.cuda:
            self._pool = [torch.cuda.Event(enable_timing=True) for _ in range(marks)]
            self._pool.reverse()  # pop() from the end hands them out in creation order

    def mark(self) -> None:
        if self.cuda:
            event = self._pool.pop() if self._pool else torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def intervals_s(self) -> list[float]:
        """Seconds between consecutive marks (call after the closing synchronize)."""
        if self.cuda:
            return [a.elapsed_time(b) / 1000.0 for a, b in zip(self.marks, self.marks[1:])]
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU, whose work is synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True, kw_only=True)
class WarmUp:
    """What warm-up did: steps, seconds, whether step time settled, the first loss, the last
    steps' median time."""

    steps: int
    seconds: float
    settled: bool
    loss_first: float
    recent_step_s: float


def warm_up(step: TrainingStep, device: torch.device, budget_s: float) -> WarmUp:
    """Run steps until the budget is spent and step time has settled (or a cap is hit).

    The first step (allocator growth, cuDNN autotuning, compilation) is not counted against the
    budget.
    """
    start = time.perf_counter()
    loss_first = float(step().detach().float().item())
    synchronize(device)
    after_first = time.perf_counter()
    times: list[float] = []
    settled = False
    while True:
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
        spent = time.perf_counter() - after_first
        if spent >= budget_s and len(times) >= MIN_WARMUP_STEPS - 1:
            settled = _settled(times)
            if settled or spent >= WARMUP_CAP_FACTOR * budget_s:
                break
    return WarmUp(steps=len(times) + 1, seconds=time.perf_counter() - start, settled=settled,
                  loss_first=loss_first, recent_step_s=statistics.median(times[-5:]))


def _settled(times: list[float]) -> bool:
    """True when the median of the last k steps is within tolerance of the k before them."""
    k = min(5, len(times) // 2)
    if k == 0:
        return False
    recent = statistics.median(times[-k:])
    before = statistics.median(times[-2 * k:-k])
    return abs(recent - before) <= SETTLE_TOLERANCE * before


def measure_window(
    step: TrainingStep,
    device: torch.device,
    settings: LoopSettings,
    on_window_open: Callable[[], None] = lambda: None,
    on_window_close: Callable[[], None] = lambda: None,
    expected_step_s: float | None = None,
) -> tuple[list[float], list[float], list[float], list[float], float, torch.Tensor]:
    """Run the timed window; returns per-step total/forward/backward/optimizer seconds, the
    window's wall seconds and the last loss tensor (not yet read, so nothing syncs inside)."""
    clock = _Clock(device)
    expected_steps = settings.min_steps
    if expected_step_s:
        expected_steps = max(expected_steps, int(1.25 * settings.duration_s / expected_step_s))
    clock.reserve(3 * min(expected_steps, 100_000) + 1)
    steps = 0
    loss = None
    synchronize(device)
    on_window_open()
    window_start = time.perf_counter()
    clock.mark()
    while True:
        loss = step(clock.mark)
        clock.mark()
        steps += 1
        if steps >= settings.min_steps and time.perf_counter() - window_start >= settings.duration_s:
            break
    synchronize(device)
    window_s = time.perf_counter() - window_start
    on_window_close()
    intervals = clock.intervals_s()
    forward = intervals[0::3]
    backward = intervals[1::3]
    optimizer = intervals[2::3]
    totals = [f + b + o for f, b, o in zip(forward, backward, optimizer)]
    return totals, forward, backward, optimizer, window_s, loss


def run_loop(
    step: TrainingStep,
    device: torch.device,
    settings: LoopSettings,
    on_window_open: Callable[[], None] = lambda: None,
    on_window_close: Callable[[], None] = lambda: None,
) -> LoopResult:
    """Warm up, then measure one window."""
    warm = warm_up(step, device, settings.warmup_s)
    totals, forward, backward, optimizer, window_s, last_loss = measure_window(
        step, device, settings, on_window_open, on_window_close,
        expected_step_s=warm.recent_step_s,
    )
    loss_last = float(last_loss.detach().float().item())
    return LoopResult(
        step_times_s=tuple(totals),
        forward_s=tuple(forward),
        backward_s=tuple(backward),
        optimizer_s=tuple(optimizer),
        warmup_steps=warm.steps,
        warmup_s=warm.seconds,
        warmup_settled=warm.settled,
        window_s=window_s,
        loss_first=warm.loss_first,
        loss_last=loss_last,
    )

