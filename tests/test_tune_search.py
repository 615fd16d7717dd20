"""The lr search's rule (`bigtrain.run.tune_search`) on exact numbers: grid order, budget, choice."""

from __future__ import annotations

import math

import pytest

from bigtrain.run.tune_search import (
    STOP_ALL_TRIALS,
    STOP_BUDGET,
    Trial,
    choose,
    next_trial,
    spent_j,
    spent_s,
    stop_reason,
    trial_lrs,
)


def test_the_grid_starts_at_the_default_then_steps_half_decades_below_and_above() -> None:
    assert trial_lrs(1e-3, 1) == (1e-3,)
    assert trial_lrs(1e-3, 2) == (1e-3, 3.16e-4)
    assert trial_lrs(1e-3, 3) == (1e-3, 3.16e-4, 3.16e-3)
    assert trial_lrs(0.01, 5) == (0.01, 0.00316, 0.0316, 0.001, 0.1)
    # any N stays centred on the default: as many steps below as above, or one more below
    lrs = trial_lrs(0.05, 6)
    assert sum(lr < 0.05 for lr in lrs) == 3 and sum(lr > 0.05 for lr in lrs) == 2


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_the_grid_refuses_a_default_that_is_not_a_positive_number(bad: float) -> None:
    with pytest.raises(ValueError, match="default lr"):
        trial_lrs(bad, 3)
    with pytest.raises(ValueError, match="at least one trial"):
        trial_lrs(1e-3, 0)


def _trial(lr: float, status: str = "ok", steps: int | None = None, seconds: float | None = None,
           best: float | None = None, cost_s: float = 1.0, cost_j: float | None = None) -> Trial:
    return Trial(lr=lr, status=status, steps_to_target=steps, time_to_target_s=seconds,
                 best_value=best, cost_s=cost_s, cost_j=cost_j)


def test_the_search_runs_the_grid_in_order_until_it_is_done() -> None:
    grid = trial_lrs(1e-3, 3)
    done: list[Trial] = []
    seen = []
    while (lr := next_trial(grid, done, budget_s=None)) is not None:
        seen.append(lr)
        done.append(_trial(lr))
    assert tuple(seen) == grid
    assert stop_reason(grid, done) == STOP_ALL_TRIALS


def test_the_budget_stops_further_trials_once_spent_but_never_the_first() -> None:
    grid = trial_lrs(1e-3, 5)
    assert next_trial(grid, [], budget_s=0.001) == grid[0]  # nothing spent yet
    done = [_trial(grid[0], cost_s=4.0)]
    assert next_trial(grid, done, budget_s=10.0) == grid[1]
    done.append(_trial(grid[1], cost_s=6.0))  # 10 s spent: the budget is reached
    assert next_trial(grid, done, budget_s=10.0) is None
    assert stop_reason(grid, done) == STOP_BUDGET
    assert spent_s(done) == 10.0


def test_energy_is_summed_only_when_every_trial_measured_it() -> None:
    assert spent_j([_trial(1e-3, cost_j=2.5), _trial(1e-2, cost_j=1.5)]) == 4.0
    assert spent_j([_trial(1e-3, cost_j=2.5), _trial(1e-2, cost_j=None)]) is None
    assert spent_j([]) is None


def test_the_fewest_steps_to_target_win_then_fewer_seconds_then_the_smaller_lr() -> None:
    trials = [_trial(1e-3, steps=100, seconds=1.0), _trial(3e-3, steps=60, seconds=2.0),
              _trial(1e-2, "diverged"), _trial(3e-4, "not_reached", best=0.99)]
    assert choose(trials, "max").lr == 3e-3  # fewer steps beat fewer seconds
    tie = [_trial(1e-3, steps=60, seconds=1.5), _trial(3e-3, steps=60, seconds=1.2)]
    assert choose(tie, "max").lr == 3e-3
    same = [_trial(3e-3, steps=60, seconds=1.2), _trial(1e-3, steps=60, seconds=1.2)]
    assert choose(same, "max").lr == 1e-3


def test_without_a_trial_at_target_the_closest_best_value_wins_in_the_target_direction() -> None:
    trials = [_trial(1e-3, "not_reached", best=0.80), _trial(3e-3, "not_reached", best=0.90),
              _trial(1e-2, "diverged", best=0.95)]  # a diverged trial is never chosen
    assert choose(trials, "max").lr == 3e-3
    losses = [_trial(1e-3, "not_reached", best=0.05), _trial(3e-3, "not_reached", best=0.03)]
    assert choose(losses, "min").lr == 3e-3


def test_nothing_is_chosen_when_every_trial_diverged_or_failed() -> None:
    assert choose([_trial(1e-3, "diverged"), _trial(3e-3, "error")], "max") is None
    assert choose([], "max") is None
