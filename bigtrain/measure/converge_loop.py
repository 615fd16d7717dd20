"""The converge loop: fetch a batch, take a timed training step, evaluate every few steps, stop.

Three clocks run side by side (see `bigtrain.measure.converge` for why they count what they count):
the training clock (fetching, moving and training, up to the synchronize before an evaluation),
the loader's share of it, and the evaluation clock. Each step's forward, backward and optimizer
phases are timed as in the step-time protocol (perf_counter on the CPU, CUDA events on a GPU) and
read only at the next evaluation, where the device is synchronized anyway.

Two things a step may do besides training are kept off the training clock. A step during which
dynamo compiled a graph (a compiled model or optimizer step, torchao's self-compiling 8-bit AdamW:
the cell's `compile_probe` moved) is counted as a training step but its seconds go to `compile_s`
and its phases are not sampled: compilation is a one-off cost whose size depends on the compile
cache a reused worker already holds, so counting it would make a cell's first seed slower than
its second for no reason of the optimizer's. The lr schedule (`bigtrain.training.schedules`) is
written before every step over the `max_steps` horizon.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bigtrain.data.loader import TimedBatches, make_loader
from bigtrain.data.tasks import ConvergeTask, evaluate, task_for
from bigtrain.cells.settings import ConvergeSettings
from bigtrain.measure.step_loop import synchronize
from bigtrain.training.optim import set_train_mode
from bigtrain.training.schedules import LrSchedule

#: A training or held-out loss this many times the first step's loss has exploded: `diverged`.
EXPLODING_LOSS_FACTOR = 100.0


@dataclass(frozen=True, kw_only=True)
class Target:
    """The held-out target a cell trains to."""

    metric: str
    value: float
    direction: str


@dataclass(frozen=True, kw_only=True)
class ConvergeRun:
    """What one converge run did: its outcome, clocks, per-step times and curve."""

    status: str  # ok | not_reached | diverged
    reason: str | None
    task: str
    seed: int
    target: Target
    settings: ConvergeSettings
    steps: int
    train_s: float
    data_s: float
    eval_s: float
    epochs: int
    evaluations: int
    train_samples: int
    eval_samples: int
    best_value: float | None
    loss_first: float
    loss_last: float
    step_times_s: tuple[float, ...]
    forward_s: tuple[float, ...]
    backward_s: tuple[float, ...]
    optimizer_s: tuple[float, ...]
    #: {step, wall_s, train_loss, eval_loss, eval_metric}: one value per evaluation, all finite.
    curve: Mapping[str, Sequence[float]]
    #: Seconds of the steps that compiled a graph, outside `train_s`; None: the cell never compiles.
    compile_s: float | None = None
    #: The lr schedule as run (`LrSchedule.describe`).
    schedule: Mapping[str, Any] | None = None

    @property
    def span_s(self) -> float:
        """The seconds the run took in all, the span its telemetry covers: training,
        evaluations and compilation."""
        return self.train_s + self.eval_s + (self.compile_s or 0.0)


class _PhaseClock:
    """Four marks per step (start, after forward, after backward, end), read after a synchronize."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.pending: list[list[Any]] = []
        self.discarded: list[list[Any]] = []
        self.forward_s: list[float] = []
        self.backward_s: list[float] = []
        self.optimizer_s: list[float] = []

    def begin(self) -> list[Any]:
        marks: list[Any] = []
        self.pending.append(marks)
        self.mark(marks)
        return marks

    def mark(self, marks: list[Any]) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            marks.append(event)
        else:
            marks.append(time.perf_counter())

    def discard_last(self) -> None:
        """Set the latest step's marks aside (a step that compiled: its phases are no sample)."""
        self.discarded.append(self.pending.pop())

    def fall_back_to_discarded(self) -> None:
        """A run whose every step compiled keeps those steps as its samples rather than none
        (call after the last `collect`); the record's `compile_s` says they compiled."""
        if not self.forward_s and self.discarded:
            self.pending, self.discarded = self.discarded, []
            self.collect()

    def collect(self) -> None:
        """Turn the pending steps' marks into phase seconds (call after a synchronize)."""
        for marks in self.pending:
            if self.cuda:
                spans = [a.elapsed_time(b) / 1000.0 for a, b in zip(marks, marks[1:])]
            else:
                spans = [b - a for a, b in zip(marks, marks[1:])]
            self.forward_s.append(spans[0])
            self.backward_s.append(spans[1])
            self.optimizer_s.append(spans[2])
        self.pending.clear()

    @property
    def step_times_s(self) -> tuple[float, ...]:
        return tuple(f + b + o for f, b, o in zip(self.forward_s, self.backward_s, self.optimizer_s))


def train_to_target(built: Any, settings: ConvergeSettings) -> ConvergeRun:
    """Train `built` (a `bigtrain.measure.contract.BuiltCell`) on its task until the target, a budget or
    divergence; see the module docstring for the clocks."""
    task = task_for(built.model_name)
    if task is None:  # the matrix marks such cells unsupported; a direct caller gets a clear error
        raise ValueError(f"{built.model_name} has no converge task")
    split = task.load()
    workload, step, device = built.workload, built.step, built.device
    channels_last = device.type == "cuda" and split.train_inputs.dim() == 4
    batches = TimedBatches(make_loader(split.train_inputs, split.train_targets,
                                       batch_size=built.batch_size, seed=built.seed),
                           device=device, channels_last=channels_last)
    clock = _PhaseClock(device)
    curve: dict[str, list[float]] = {"step": [], "wall_s": [], "train_loss": [], "eval_loss": [],
                                     "eval_metric": []}
    steps = evaluations = 0
    train_s = eval_s = 0.0
    best: float | None = None
    loss_first = math.nan
    loss_sum = torch.zeros((), device=device)
    losses_since_eval = 0
    status, reason = "not_reached", None
    lr_schedule = LrSchedule(built.optimizer, built.schedule, settings.max_steps)
    probe = built.compile_probe
    compile_s = 0.0
    set_train_mode(built.optimizer, True)  # Schedule-Free refuses a step in evaluation mode
    segment_start = time.perf_counter()
    while True:
        workload.inputs, workload.targets = batches.next()
        lr_schedule.before_step()
        graphs_before = probe() if probe is not None else 0
        step_start = time.perf_counter()
        marks = clock.begin()
        loss = step(lambda: clock.mark(marks))
        clock.mark(marks)
        if probe is not None and probe() != graphs_before:
            synchronize(device)  # the step's own work, then off the clock with its compilation
            spent = time.perf_counter() - step_start
            compile_s += spent
            segment_start += spent
            clock.discard_last()
        loss_sum += loss.detach().float()
        losses_since_eval += 1
        steps += 1
        if steps == 1:
            loss_first = float(loss.detach().float())  # one read: the explosion yardstick
        out_of_time = train_s + time.perf_counter() - segment_start >= settings.max_time_s
        if not (steps % settings.eval_every == 0 or steps >= settings.max_steps or out_of_time):
            continue
        # -- an evaluation: the training clock stops at the synchronize
        synchronize(device)
        train_s += time.perf_counter() - segment_start
        clock.collect()
        train_loss = float(loss_sum) / losses_since_eval
        loss_sum.zero_()
        losses_since_eval = 0
        eval_start = time.perf_counter()
        set_train_mode(built.optimizer, False)  # Schedule-Free: evaluate its averaged weights
        eval_loss, value = evaluate(workload.model, workload.loss_fn, split, task.metric,
                                    device=device, autocast=step.autocast,
                                    channels_last=channels_last)
        set_train_mode(built.optimizer, True)
        eval_s += time.perf_counter() - eval_start
        evaluations += 1
        if problem := _divergence(train_loss, eval_loss, value, loss_first):
            status, reason = "diverged", f"loss diverged by step {steps}: {problem}"
            break
        for key, number in (("step", steps), ("wall_s", train_s), ("train_loss", train_loss),
                            ("eval_loss", eval_loss), ("eval_metric", value)):
            curve[key].append(float(number))
        if task.better(value, best):
            best = value
        if task.reached(value):
            status = "ok"
            break
        if steps >= settings.max_steps or out_of_time:
            reason = _not_reached_reason(task, best, steps, train_s, settings)
            break
        segment_start = time.perf_counter()
    clock.fall_back_to_discarded()
    return ConvergeRun(
        status=status, reason=reason, task=task.data, seed=built.seed,
        target=Target(metric=task.metric, value=task.target_value, direction=task.direction),
        settings=settings, steps=steps, train_s=train_s, data_s=batches.data_s, eval_s=eval_s,
        epochs=batches.epochs, evaluations=evaluations,
        train_samples=len(split.train_inputs), eval_samples=len(split.eval_inputs),
        best_value=best, loss_first=loss_first,
        loss_last=curve["train_loss"][-1] if curve["train_loss"] else math.nan,
        step_times_s=clock.step_times_s, forward_s=tuple(clock.forward_s),
        backward_s=tuple(clock.backward_s), optimizer_s=tuple(clock.optimizer_s), curve=curve,
        compile_s=compile_s if probe is not None else None, schedule=lr_schedule.describe(),
    )


def _divergence(train_loss: float, eval_loss: float, value: float, loss_first: float) -> str | None:
    """Why these losses mean the run diverged (non-finite, or exploded past the first step's loss
    EXPLODING_LOSS_FACTOR times over), or None."""
    figures = {"training loss": train_loss, "held-out loss": eval_loss, "held-out metric": value}
    for name, number in figures.items():
        if not math.isfinite(number):
            return f"{name} is {number}"
    if math.isfinite(loss_first) and loss_first > 0:
        limit = EXPLODING_LOSS_FACTOR * loss_first
        for name in ("training loss", "held-out loss"):
            if figures[name] > limit:
                return (f"{name} {figures[name]:.4g} is more than {EXPLODING_LOSS_FACTOR:g} times "
                        f"the first step's {loss_first:.4g}")
    return None


def _not_reached_reason(task: ConvergeTask, best: float | None, steps: int, train_s: float,
                        settings: ConvergeSettings) -> str:
    """The `not_reached` reason: best value, target and the budget that ran out."""
    relation = ">=" if task.direction == "max" else "<="
    budget = (f"{steps} steps in {train_s:.1f} s (budget: {settings.max_steps} steps, "
              f"{settings.max_time_s:g} s)")
    best_text = "none" if best is None else f"{best:.4g}"
    return (f"best held-out {task.metric} {best_text} did not reach the target {relation} "
            f"{task.target_value:g} within {budget}")
