"""One group's learning-rate search (`bigbench converge --tune-lr N`): which lrs, in which order,
when to stop, which lr wins. Pure functions of plain values; `bigtrain.run.tune` drives them.

The rule, stated once (docs/tuning.md says the same):

- **Grid.** Half-decade steps (x sqrt(10) ~ 3.16) around the optimizer's own lr (the registry's
  default): the default first, then one step below, one above, two below, two above, ... The first
  N of that order are the trials, so any N holds the default and stays centred on it, and a budget
  that stops the search early has run the trials nearest the default. Values are rounded to three
  significant figures (`0.00316`), so cell ids and labels stay readable.
- **Budget.** Before each trial, the seconds spent (training plus evaluation of every trial so
  far) are compared with the budget; once they reach it, no further trial starts. The trial that
  crosses it runs to its end (a converge run cut in the middle would be a different measurement).
- **Choice.** Within a group only the lr differs, so the cost of a step does not depend on the
  trial: steps to target are the noise-free ranking (seconds on a shared machine are not). The
  trial that reached the target in the fewest steps wins (ties: fewer seconds, then the smaller
  lr). If none reached it, the trial whose best held-out value came closest wins, so the finals
  still say how far the optimizer gets; if every trial diverged or failed, nothing is chosen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: One step of the grid, in decades (0.5: x sqrt(10)).
GRID_STEP_DECADES = 0.5
STOP_ALL_TRIALS = "all_trials"
STOP_BUDGET = "budget"


def trial_lrs(default_lr: float, trials: int) -> tuple[float, ...]:
    """The lrs of a search of `trials` trials around `default_lr`, in the order they run."""
    if not (math.isfinite(default_lr) and default_lr > 0):
        raise ValueError(f"the default lr must be a finite number > 0, got {default_lr!r}")
    if trials < 1:
        raise ValueError(f"a search needs at least one trial, got {trials}")
    offsets = [0]
    step = 1
    while len(offsets) < trials:
        offsets.append(-step)
        if len(offsets) < trials:
            offsets.append(step)
        step += 1
    return tuple(_three_figures(default_lr * 10 ** (GRID_STEP_DECADES * k)) for k in offsets)


def _three_figures(value: float) -> float:
    return float(f"{value:.3g}")


@dataclass(frozen=True, kw_only=True)
class Trial:
    """What one trial gave the search."""

    lr: float
    status: str  # the record's: ok, not_reached, diverged, error, ...
    steps_to_target: int | None = None
    time_to_target_s: float | None = None
    best_value: float | None = None
    #: Training plus evaluation seconds the trial took (what it cost the search).
    cost_s: float = 0.0
    #: Its GPU energy over the whole trial, None where none was measured.
    cost_j: float | None = None


def spent_s(trials: Sequence[Trial]) -> float:
    """Seconds the trials so far cost."""
    return math.fsum(t.cost_s for t in trials)


def spent_j(trials: Sequence[Trial]) -> float | None:
    """Joules the trials so far cost; None unless every trial measured its energy."""
    if not trials or any(t.cost_j is None for t in trials):
        return None
    return math.fsum(t.cost_j for t in trials)  # type: ignore[misc]


def next_trial(grid: Sequence[float], done: Sequence[Trial],
               budget_s: float | None) -> float | None:
    """The lr of the next trial, or None when the search is over (grid run, or budget spent)."""
    if len(done) >= len(grid):
        return None
    if budget_s is not None and done and spent_s(done) >= budget_s:
        return None
    return grid[len(done)]


def stop_reason(grid: Sequence[float], done: Sequence[Trial]) -> str:
    """Why a finished search ended: every trial ran, or the budget stopped it."""
    return STOP_ALL_TRIALS if len(done) >= len(grid) else STOP_BUDGET


def choose(done: Sequence[Trial], direction: str | None) -> Trial | None:
    """The winning trial (see the module docstring), or None when no trial gave a usable result.

    `direction` is the target's: `max` (higher held-out values are better) or `min`.
    """
    reached = [t for t in done if t.status == "ok" and t.steps_to_target is not None]
    if reached:
        return min(reached, key=lambda t: (t.steps_to_target,
                                           _or_inf(t.time_to_target_s), t.lr))
    measured = [t for t in done if t.status == "not_reached" and t.best_value is not None
                and math.isfinite(t.best_value)]
    if not measured:
        return None
    sign = -1.0 if direction == "max" else 1.0
    return min(measured, key=lambda t: (sign * float(t.best_value), t.lr))  # type: ignore[arg-type]


def _or_inf(value: float | None) -> float:
    return math.inf if value is None else float(value)
