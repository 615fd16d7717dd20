"""Learning-rate schedules: the `schedule` axis of converge cells.

A schedule is a factor on the lr the cell was built with (its `lr` axis, or the lr a tuning search
chose, which is then the schedule's peak), as a function of the optimizer steps taken and the run's
horizon, the converge budget's `max_steps`:

- `constant`: 1 at every step (what every cell did before the axis existed);
- `cosine`: half a cosine from 1 at the first step to 0 at the horizon;
- `warmup-cosine`: a linear warm-up over the first `WARMUP_FRACTION` of the horizon (at least one
  step), from 1/W up to 1, then the cosine over what is left.

A run that reaches its target stops early, part-way down its cosine, as a real run tuned for
that horizon would not; the horizon is recorded with the schedule so that a reader can tell.
Schedule-Free optimizers replace the schedule (`OptimizerSpec.replaces_schedule`): they run under
`constant` only.

The factor is applied by writing each parameter group's lr before every step, not by a
`torch.optim.lr_scheduler`: those wrap `optimizer.step`, which the `compiled` impl has already
replaced by a compiled function, and a tensor lr (torchao's 8-bit AdamW) is filled in place so a
compiled step sees a new value without recompiling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: The schedules, in the order `bigbench list` and the axis show them (the axis keeps its own copy
#: of these names, pure text, kept in step by a test).
SCHEDULES: Mapping[str, str] = {
    "constant": "the lr as given at every step",
    "cosine": "half a cosine from the lr to 0 over the converge budget's max_steps",
    "warmup-cosine": "linear warm-up over the first 5% of max_steps, then cosine to 0",
}
CONSTANT = "constant"
#: The share of the horizon `warmup-cosine` spends warming up (a common choice for short runs).
WARMUP_FRACTION = 0.05


def set_group_lr(group: dict[str, Any], value: float) -> None:
    """Write a parameter group's lr: into the tensor itself where the optimizer keeps a tensor lr
    (torchao's 8-bit AdamW refuses a float in its place, and a compiled step keeps seeing the same
    tensor, so it does not recompile), else as a float."""
    if hasattr(group["lr"], "fill_"):
        group["lr"].fill_(value)
    else:
        group["lr"] = value


def warmup_steps(schedule: str, total_steps: int) -> int:
    """How many of the first steps warm up under `schedule` over `total_steps` (0: none)."""
    if schedule != "warmup-cosine":
        return 0
    return max(1, round(WARMUP_FRACTION * total_steps))


def lr_factor(schedule: str, step: int, total_steps: int) -> float:
    """The factor on the peak lr for optimizer step `step` (0 for the first) of a run whose
    horizon is `total_steps`; a step at or past the horizon gets the schedule's last value."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if schedule == CONSTANT:
        return 1.0
    if total_steps < 1:
        raise ValueError(f"a schedule's horizon must be >= 1 step, got {total_steps}")
    warm = warmup_steps(schedule, total_steps)
    if step < warm:
        return (step + 1) / warm
    decay_steps = max(1, total_steps - warm)
    progress = min(1.0, (step - warm) / decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class LrSchedule:
    """Sets an optimizer's lr before each step from `lr_factor`, per parameter group (each group's
    lr as built is its peak: Muon's matrix group and its AdamW group keep their own)."""

    def __init__(self, optimizer: Any, schedule: str, total_steps: int) -> None:
        lr_factor(schedule, 0, total_steps)  # a bad name or horizon fails here, before training
        self.optimizer = optimizer
        self.schedule = schedule
        self.total_steps = total_steps
        self.peak_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.steps_taken = 0
        self.last_factor = 1.0

    def before_step(self) -> None:
        """Write the lr the next step uses (a no-op for `constant`)."""
        if self.schedule == CONSTANT:
            return
        self.last_factor = lr_factor(self.schedule, self.steps_taken, self.total_steps)
        for group, peak in zip(self.optimizer.param_groups, self.peak_lrs):
            set_group_lr(group, peak * self.last_factor)
        self.steps_taken += 1

    def describe(self) -> dict[str, Any]:
        """What the record's `extra` says of the schedule: its name, horizon, warm-up steps and
        the factor of the last step taken."""
        return {"schedule": self.schedule, "horizon_steps": self.total_steps,
                "warmup_steps": warmup_steps(self.schedule, self.total_steps),
                "steps_scheduled": self.steps_taken, "last_lr_factor": self.last_factor}


def schedule_skip(spec: Any, impl: str, schedule: str) -> tuple[str, str] | None:
    """(status, reason) of a cell whose optimizer (an `OptimizerSpec`) cannot run as `impl` under
    `schedule`, or None: a Schedule-Free optimizer under a schedule is `skipped` (a dead
    combination: its constant cell is the one to compare); a torch-compiled step is
    `unsupported`."""
    if schedule == CONSTANT:
        return None
    if spec.replaces_schedule:
        return "skipped", (f"{spec.name} replaces the lr schedule (Schedule-Free): it runs under "
                           f"schedule constant only, and its constant cell is the one to compare")
    if impl == "compiled" and not spec.compiles_itself:
        return "unsupported", ("a compiled optimizer step is guarded on its float lr, so a "
                               "scheduled lr would recompile it every step; scheduled cells run "
                               "eagerly (forloop, foreach, fused, native)")
    return None
