"""The training step and the measured loop: warm up, synchronize, time, synchronize.

Inside the timed window only the training step runs, plus one timestamp (perf_counter on the CPU,
a recorded CUDA event on a GPU) at each phase boundary. Nothing synchronizes the GPU inside the
window; losses are read and statistics computed after it closes.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from bigtrain.cells.settings import StepTimeSettings
from bigtrain.training.precision import PrecisionRecipe
from bigtrain.workloads.base import Workload
from bigtrain.common.warmup import MIN_WARMUP_STEPS, SETTLE_TOLERANCE, WARMUP_CAP_FACTOR  # noqa: F401
from bigtrain.common.warmup import settled as settle_rule

#: Warm-up stops early only when step time has settled to within this fraction.
#: Warm-up may run this many times its budget while step time is still moving, then gives up.


@dataclass(frozen=True, kw_only=True)
class CompileActivity:
    """What torch.compile did during warm-up: graphs compiled, warm-up steps that compiled (the
    first included), their wall seconds, and whether the last warm-up steps were still compiling."""

    graphs: int
    compiling_steps: int
    compiling_steps_s: float
    still_compiling_at_end: bool


@dataclass(frozen=True, kw_only=True)
class LoopResult:
    """Raw figures from one warm-up and measured window: the window's own result, what the
    warm-up saw, and both ends' losses read on the host once the window is closed."""

    window: WindowResult
    warmup_steps: int
    warmup_s: float
    warmup_settled: bool
    loss_first: float
    loss_last: float
    compile: CompileActivity | None = None


@dataclass(frozen=True, kw_only=True)
class WindowResult:
    """One timed window: per-step total/forward/backward/optimizer seconds, the window's wall
    seconds, the last loss tensor (not yet read, so nothing syncs inside the window), and how many
    CUDA events had to be made inside the window because the warm-up's rate under-predicted it."""

    step_times_s: tuple[float, ...]
    forward_s: tuple[float, ...]
    backward_s: tuple[float, ...]
    optimizer_s: tuple[float, ...]
    window_s: float
    last_loss: Any
    clock_events_made_in_window: int = 0


class TrainingStep:
    """One training step of a workload, with a hook at each phase boundary.

    Phases: forward (autocast forward and loss), backward (scaled backward), optimizer
    (step, scaler update, zero_grad). With `micro_batches` k > 1 (gradient accumulation), the
    workload's batch is cut into k equal slices along its first dimension, made once here, and
    each runs forward and backward (its loss divided by k, so the summed gradients are those of
    the mean loss over the whole batch) before one optimizer step: the forward and backward
    phases are then the sums over the micro-batches, and a step is one optimizer step.
    `no_sync` (set by a data-parallel rank) is a context in which a micro-batch's backward keeps
    its gradients local: every micro-batch but the last runs in it, so gradients are reduced once
    per optimizer step.
    """

    #: The window times each phase; a step that runs as one unit (a replayed CUDA graph) says False
    #: and is timed whole.
    separable_phases = True

    def __init__(
        self,
        workload: Workload,
        optimizer: torch.optim.Optimizer,
        optimizer_step: Callable[[], Any],
        recipe: PrecisionRecipe,
        device: torch.device,
        micro_batches: int = 1,
    ) -> None:
        self.workload = workload
        self.optimizer = optimizer
        self.optimizer_step = optimizer_step
        self.device_type = device.type
        self.autocast = lambda: recipe.autocast(device.type)
        self.scaler = recipe.make_scaler(device.type)
        self.micro_batches = micro_batches
        self.no_sync: Callable[[], Any] | None = None
        self._slices = micro_batch_slices(workload, micro_batches) if micro_batches > 1 else ()

    def __call__(self, mark: Callable[[], None] = lambda: None) -> torch.Tensor:
        """Run one step; `mark()` is called after each forward and after each backward pass."""
        if self.micro_batches > 1:
            loss = self._accumulate(mark)
        else:
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

    def _accumulate(self, mark: Callable[[], None]) -> torch.Tensor:
        """Forward and backward of every micro-batch; returns the mean of their losses."""
        workload, whole = self.workload, (self.workload.inputs, self.workload.targets)
        total: torch.Tensor | None = None
        last = len(self._slices) - 1
        try:
            for index, (inputs, targets) in enumerate(self._slices):
                workload.inputs, workload.targets = inputs, targets
                with self.autocast():
                    loss = workload.forward_loss() / self.micro_batches
                mark()
                keep_local = self.no_sync is not None and index < last
                with self.no_sync() if keep_local else contextlib.nullcontext():
                    if self.scaler is not None:
                        self.scaler.scale(loss).backward()
                    else:
                        loss.backward()
                mark()
                total = loss.detach() if total is None else total + loss.detach()
        finally:
            workload.inputs, workload.targets = whole
        assert total is not None
        return total


def micro_batch_slices(workload: Workload, micro_batches: int) -> tuple[tuple[Any, Any], ...]:
    """The workload's batch cut into `micro_batches` equal slices along the first dimension (views,
    no copies): (inputs, targets) each; ValueError when the batch does not divide."""
    inputs, targets = workload.inputs, workload.targets
    tensors = list(inputs.values()) if isinstance(inputs, Mapping) else [inputs]
    batch = tensors[0].shape[0]
    if batch % micro_batches:
        raise ValueError(f"grad_accum {micro_batches} does not divide the batch of {batch}")
    size = batch // micro_batches

    def cut(tensor: torch.Tensor, i: int) -> torch.Tensor:
        return tensor[i * size:(i + 1) * size]

    out = []
    for i in range(micro_batches):
        part = ({k: cut(v, i) for k, v in inputs.items()} if isinstance(inputs, Mapping)
                else cut(inputs, i))
        out.append((part, None if targets is None else cut(targets, i)))
    return tuple(out)


class _Clock:
    """Timestamps for the window: perf_counter on the CPU, CUDA events on a GPU.

    c10 makes a CUDA event lazily, at its first `record()`, so merely constructing events before
    the window would still create them inside it. `reserve` therefore records every event once
    before the window opens; inside it, only `record()` of existing events happens. More are made
    only if the window runs longer than the warm-up rate predicted, and those are counted.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []
        self._pool: list[Any] = []
        self.made_in_window = 0

    def reserve(self, marks: int) -> None:
        """Make `marks` events now (before the window): construct and record each once."""
        if self.cuda:
            self._pool = [torch.cuda.Event(enable_timing=True) for _ in range(marks)]
            for event in self._pool:
                event.record()  # the lazy creation happens here, outside the window
            self._pool.reverse()  # pop() from the end hands them out in creation order

    def mark(self) -> None:
        if self.cuda:
            if self._pool:
                event = self._pool.pop()
            else:
                event = torch.cuda.Event(enable_timing=True)
                self.made_in_window += 1
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


#: Warm-up ends only after this many consecutive steps in which nothing was compiled.
QUIET_STEPS_AFTER_COMPILE = 2
#: Warm-up gives up waiting for compilation to stop after this many compiling steps.
MAX_COMPILING_STEPS = 32


@dataclass(frozen=True, kw_only=True)
class WarmUp:
    """What warm-up did: steps, seconds, whether step time settled, the first loss, the last
    steps' median time, and compile activity (None for a cell that compiles nothing)."""

    steps: int
    seconds: float
    settled: bool
    loss_first: float
    recent_step_s: float
    compile: CompileActivity | None = None


def warm_up(step: TrainingStep, device: torch.device, budget_s: float,
            compile_probe: Callable[[], int] | None = None) -> WarmUp:
    """Run steps until the budget is spent and step time has settled (or a cap is hit).

    The first step (allocator growth, cuDNN autotuning, compilation) is not counted against the
    budget. With `compile_probe` (a count of graphs compiled so far in this process), a step that
    compiled something is not counted either, and warm-up only ends after
    QUIET_STEPS_AFTER_COMPILE steps that compiled nothing, so a recompilation on the second step
    (or later) stays out of the window.
    """
    probe = compile_probe or (lambda: 0)
    graphs_before = probe()
    start = time.perf_counter()
    loss_first = float(step().detach().float().item())
    synchronize(device)
    after_first = time.perf_counter()
    steps_run = 1
    compiling_steps = 1 if probe() > graphs_before else 0
    compiling_s = after_first - start if compiling_steps else 0.0
    times: list[float] = []
    quiet_steps = 0
    settled = False
    while True:
        graphs = probe()
        t0 = time.perf_counter()
        step()
        synchronize(device)
        elapsed = time.perf_counter() - t0
        steps_run += 1
        if probe() > graphs:
            compiling_steps += 1
            compiling_s += elapsed  # compilation does not count against the budget
            quiet_steps = 0
        else:
            quiet_steps += 1
            times.append(elapsed)
        if compiling_steps > MAX_COMPILING_STEPS:
            break  # something recompiles on every step; the record's compile notes say so
        spent = time.perf_counter() - after_first - compiling_s
        quiet = compile_probe is None or quiet_steps >= QUIET_STEPS_AFTER_COMPILE
        if spent >= budget_s and len(times) >= MIN_WARMUP_STEPS - 1 and quiet:
            settled = settle_rule(times)
            if settled or spent >= WARMUP_CAP_FACTOR * budget_s:
                break
    activity = None
    if compile_probe is not None:
        activity = CompileActivity(graphs=probe() - graphs_before, compiling_steps=compiling_steps,
                                   compiling_steps_s=compiling_s,
                                   still_compiling_at_end=quiet_steps < QUIET_STEPS_AFTER_COMPILE)
    recent = times[-5:] or [elapsed]
    return WarmUp(steps=steps_run, seconds=time.perf_counter() - start, settled=settled,
                  loss_first=loss_first, recent_step_s=statistics.median(recent), compile=activity)


def measure_window(
    step: TrainingStep,
    device: torch.device,
    settings: StepTimeSettings,
    on_window_open: Callable[[], None] = lambda: None,
    on_window_close: Callable[[], None] = lambda: None,
    expected_step_s: float | None = None,
) -> WindowResult:
    """Run the timed window: only the steps and one timestamp per phase boundary inside it.

    A step whose phases cannot be told apart (`separable_phases` False: a replayed CUDA graph) gets
    one timestamp per step and empty phase lists, so no mark is recorded where nothing happens.
    """
    clock = _Clock(device)
    phases = getattr(step, "separable_phases", True)
    # Forward and backward of each micro-batch, then the optimizer (a single batch: 3 marks).
    micro = getattr(step, "micro_batches", 1)
    marks_per_step = 2 * micro + 1 if phases else 1
    phase_mark = clock.mark if phases else _no_mark
    expected_steps = settings.min_steps
    if expected_step_s:
        expected_steps = max(expected_steps, int(1.25 * settings.duration_s / expected_step_s))
    clock.reserve(marks_per_step * min(expected_steps, 100_000) + 1)
    steps = 0
    loss = None
    synchronize(device)
    on_window_open()
    window_start = time.perf_counter()
    clock.mark()
    while True:
        loss = step(phase_mark)
        clock.mark()
        steps += 1
        if steps >= settings.min_steps and time.perf_counter() - window_start >= settings.duration_s:
            break
    synchronize(device)
    window_s = time.perf_counter() - window_start
    on_window_close()
    intervals = clock.intervals_s()
    if phases:
        per_step = [intervals[i:i + marks_per_step]
                    for i in range(0, len(intervals), marks_per_step)]
        forward = [sum(spans[0:-1:2]) for spans in per_step]
        backward = [sum(spans[1:-1:2]) for spans in per_step]
        optimizer = [spans[-1] for spans in per_step]
        totals = [f + b + o for f, b, o in zip(forward, backward, optimizer)]
    else:
        forward, backward, optimizer, totals = [], [], [], intervals
    return WindowResult(step_times_s=tuple(totals), forward_s=tuple(forward),
                        backward_s=tuple(backward), optimizer_s=tuple(optimizer),
                        window_s=window_s, last_loss=loss,
                        clock_events_made_in_window=clock.made_in_window)


def _no_mark() -> None:
    """The phase mark of a step timed whole."""


def run_loop(
    step: TrainingStep,
    device: torch.device,
    settings: StepTimeSettings,
    on_window_open: Callable[[], None] = lambda: None,
    on_window_close: Callable[[], None] = lambda: None,
    compile_probe: Callable[[], int] | None = None,
) -> LoopResult:
    """Warm up, then measure one window."""
    warm = warm_up(step, device, settings.warmup_s, compile_probe)
    window = measure_window(step, device, settings, on_window_open, on_window_close,
                            expected_step_s=warm.recent_step_s)
    loss_last = float(window.last_loss.detach().float().item())
    return LoopResult(
        window=window,
        warmup_steps=warm.steps,
        warmup_s=warm.seconds,
        warmup_settled=warm.settled,
        loss_first=warm.loss_first,
        loss_last=loss_last,
        compile=warm.compile,
    )
