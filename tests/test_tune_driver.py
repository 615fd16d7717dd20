"""The lr-search driver (`bigtrain.run.tune`) over an executor that fakes only where cells run (a
boundary: every record it returns is what a converge worker would send, from a known lr
landscape): the choice, fresh-seed finals, the budget, a search with no usable trial, resume."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import ClassVar

import pytest

from bigtrain.cells.spec import preset_toml, spec_from_preset
from bigtrain.report.data import load_report_data
from bigtrain.report.leaderboard import leaderboard_frames
from bigtrain.results.schema import StepTimeStats
from bigtrain.results.store import load_run
from bigtrain.run.executor import register_executor
from bigtrain.run.records import cell_record
from bigtrain.run.sweep import SweepOptions
from bigtrain.run.tune import TuneSettings, run_tune

#: Seconds of training and of evaluation every fake trial takes.
TRAIN_S, EVAL_S = 8.0, 2.0


def landscape(optimizer: str, lr: float) -> tuple[str, int | None]:
    """(status, steps to target): adam is best at 0.00316, diverges from 0.01; `broken`
    diverges at every lr; sgd never reaches the target."""
    if optimizer == "broken" or (optimizer == "adam" and lr >= 0.01):
        return "diverged", None
    if optimizer == "sgd":
        return "not_reached", None
    return "ok", round(50 + 100 * abs(math.log10(lr / 0.00316)))


class LandscapeExecutor:
    """Runs no process: answers each converge job from `landscape`; keeps the jobs asked for."""

    instances: ClassVar[list[LandscapeExecutor]] = []

    def __init__(self, settings) -> None:
        self.jobs: list = []
        self.workers_started = 0
        LandscapeExecutor.instances.append(self)

    def run(self, jobs, on_result, on_start=None) -> None:
        for job in jobs:
            self.jobs.append(job)
            lr = float(job.cell.lr)
            status, steps = landscape(job.cell.optimizer, lr)
            best = 0.96 if status == "ok" else 0.5 + lr  # a higher lr gets closer, if not there
            on_result(cell_record(
                job.run_id, job.cell, job.repeat, status=status, protocol="converge",
                reason=None if status == "ok" else f"{status} at lr {lr:g}",
                seed=job.seed, lr_used=lr, target_metric="accuracy", target_value=0.95,
                target_direction="max", steps_to_target=steps,
                time_to_target_s=TRAIN_S if steps else None, window_s=TRAIN_S,
                eval_time_s=EVAL_S, best_value=best,
                step_time_s=StepTimeStats.from_samples([0.01] * 3), items_per_s=6400.0,
                item_unit="samples", started_at="2026-12-07T08:00:00+00:00",
                ended_at="2026-12-07T08:00:10+00:00"))

    def retire_idle_workers(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


register_executor("tune-landscape", LandscapeExecutor, replace=True)


def _spec(tmp_path: Path, optimizers: list[str], seeds: int = 2):
    path = tmp_path / "tune.toml"
    path.write_text(preset_toml(model=["mlp:digits"], optimizer=optimizers, measure={
        "repeats": seeds, "seed": 10, "cell_timeout_s": 100}, device=["cpu"],
        converge={"max_steps": 100, "max_time_s": 30, "eval_every": 10}))
    return spec_from_preset(str(path))


@pytest.fixture(autouse=True)
def _broken_optimizer():
    """`broken`: an optimizer registered like a plugin's, for a search whose trials all diverge."""
    import torch

    from bigtrain.training.optim import OPTIMIZERS, OptimizerSpec, register_optimizer

    register_optimizer(OptimizerSpec(name="broken", cls=torch.optim.SGD,
                                     hyperparams={"lr": 0.1}), replace=True)
    yield
    OPTIMIZERS._items.pop("broken", None)  # the registry has no unregister: leave it as found


def _tune(tmp_path: Path, optimizers: list[str], settings: TuneSettings, **options):
    LandscapeExecutor.instances.clear()
    outcome, results = run_tune(_spec(tmp_path, optimizers), settings, SweepOptions(
        out_dir=tmp_path / "results", executor="tune-landscape", **options))
    return outcome, results, LandscapeExecutor.instances[-1]


def test_the_search_picks_the_fewest_steps_and_trains_it_from_fresh_seeds(tmp_path: Path) -> None:
    outcome, [result], executor = _tune(tmp_path, ["adam"], TuneSettings(trials=5),
                                        run_id="a")
    assert [float(j.cell.lr) for j in executor.jobs[:5]] == [0.001, 0.000316, 0.00316, 0.0001,
                                                             0.01]
    assert [(j.repeat, j.seed) for j in executor.jobs] == [(0, 10)] * 5 + [(1, 11), (2, 12)]
    assert result.chosen.lr == 0.00316 and result.stop == "all_trials"
    finals = [r for r in outcome.records if r.tune_role == "final"]
    assert {r.lr for r in finals} == {"0.00316"} and {r.tuned_lr for r in finals} == {0.00316}
    assert {r.tuning_cost_s for r in finals} == {5 * (TRAIN_S + EVAL_S)}
    diverged = [r for r in outcome.records if r.status == "diverged"]
    assert [r.lr_used for r in diverged] == [0.01]  # recorded like any trial, not a crash
    assert outcome.exit_code == 0


def test_searches_run_one_after_another_per_slot(tmp_path: Path) -> None:
    _, results, executor = _tune(tmp_path, ["adam", "sgd"], TuneSettings(trials=2), run_id="b")
    optimizers = [j.cell.optimizer for j in executor.jobs]
    assert optimizers == ["adam"] * 4 + ["sgd"] * 4  # whole answers, one search at a time
    sgd = next(r for r in results if r.group.optimizer == "sgd")
    assert sgd.chosen.lr == 0.01  # none reached: the closest best value (the higher lr here)


def test_the_budget_stops_a_search_and_every_final_says_so(tmp_path: Path) -> None:
    outcome, [result], executor = _tune(tmp_path, ["adam"], TuneSettings(trials=5, budget_s=15),
                                        run_id="c")
    assert len([j for j in executor.jobs if j.repeat == 0]) == 2  # 10 s, 20 s: stop
    assert (result.stop, result.cost_s) == ("budget", 2 * (TRAIN_S + EVAL_S))
    for final in (r for r in outcome.records if r.tune_role == "final"):
        assert (final.tune_stop, final.tune_trials, final.tune_trials_planned,
                final.tune_budget_s) == ("budget", 2, 5, 15)


def test_a_search_whose_trials_all_diverged_still_shows_its_optimizer(tmp_path: Path) -> None:
    outcome, _, executor = _tune(tmp_path, ["broken", "adam"], TuneSettings(trials=3),
                                 run_id="d")
    assert len([j for j in executor.jobs if j.cell.optimizer == "broken"]) == 3  # no finals run
    skipped = [r for r in outcome.records if r.optimizer == "broken" and r.tune_role == "final"]
    assert [(r.repeat, r.seed, r.status) for r in skipped] == [(1, 11, "skipped"),
                                                                (2, 12, "skipped")]
    assert "no trial gave a usable result" in skipped[0].reason and "0.1 (diverged)" in \
        skipped[0].reason
    [(_, ranked, _)] = leaderboard_frames(load_report_data([outcome.run_dir]))
    assert list(ranked["optimizer"]) == ["adam", "broken"]  # ranked last, never left out
    assert ranked.iloc[1]["reached"] == 0


def test_resume_replays_the_recorded_search_and_runs_only_the_missing_finals(
        tmp_path: Path) -> None:
    first, _, _ = _tune(tmp_path, ["adam"], TuneSettings(trials=3), run_id="e")
    cells = first.run_dir / "cells.jsonl"
    lines = cells.read_text().splitlines()
    cells.write_text("\n".join(lines[:-1]) + "\n")  # stopped before the last final seed
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    (first.run_dir / "manifest.json").write_text(json.dumps({**manifest, "state": "interrupted"}))

    _, [result], executor = _tune(tmp_path, ["adam"], TuneSettings(trials=3), resume="e")
    assert [(j.repeat, float(j.cell.lr)) for j in executor.jobs] == [(2, 0.00316)]
    assert result.chosen.lr == 0.00316 and len(result.trials) == 3
    records = load_run(first.run_dir).records
    assert len(records) == len(lines)
    assert records[-1].tuning_cost_s == 3 * (TRAIN_S + EVAL_S)  # the replayed trials' cost


def test_a_resume_with_other_tuning_settings_is_refused(tmp_path: Path) -> None:
    from bigtrain.common.errors import BadInput

    _tune(tmp_path, ["adam"], TuneSettings(trials=2), run_id="f")
    with pytest.raises(BadInput, match="tune"):
        _tune(tmp_path, ["adam"], TuneSettings(trials=3), resume="f")


def test_settings_out_of_range_are_bad_input() -> None:
    from bigtrain.common.errors import BadInput

    with pytest.raises(BadInput, match="--tune-lr"):
        TuneSettings(trials=0)
    with pytest.raises(BadInput, match="--tune-budget-s"):
        TuneSettings(trials=2, budget_s=math.inf)
    assert dataclasses.asdict(TuneSettings.from_json({"trials": 3})) == {"trials": 3,
                                                                        "budget_s": None}
