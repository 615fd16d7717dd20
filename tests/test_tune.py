"""`bigbench converge --tune-lr` end to end on a tiny preset: trials then fresh-seed finals, the
search's cost in the records, the budget, resume, bad input (plumbing only: no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from bigtrain.cells.spec import preset_toml
from bigtrain.training.optim import set_train_mode
from bigtrain.results.store import load_run, read_manifest
from bigtrain.run.tune import record_cost_s, trial_from_record
from bigtrain.run.tune_search import choose, trial_lrs

SEED = 5


def _preset(folder: Path, optimizers: tuple[str, ...] = ("sgd",)) -> Path:
    path = folder / "tiny-tune.toml"
    path.write_text(preset_toml(
        description="test tuned converge preset", model=["mlp:seed"], optimizer=list(optimizers),
        measure={"repeats": 2, "seed": SEED, "cell_timeout_s": 120},
        converge={"max_steps": 20, "max_time_s": 30, "eval_every": 10}))
    return path


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "cells.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("tune")
    result = run_cli("converge", "--preset", str(_preset(root)), "--out", str(root),
                     "--run-id", "t1", "--no-report", "--tune-lr", "2")
    assert result.exit_code == 0, result.output
    return root / "t1", result.output


def test_trials_run_the_grid_from_the_spec_seed_then_finals_from_fresh_seeds(tuned_run) -> None:
    run_dir, _ = tuned_run
    records = load_run(run_dir).records
    trials = [r for r in records if r.tune_role == "trial"]
    finals = [r for r in records if r.tune_role == "final"]
    assert [r.lr_used for r in trials] == list(trial_lrs(0.01, 2))  # sgd's registry lr 0.01
    assert [(r.repeat, r.seed, r.tune_trial_index) for r in trials] == [(0, SEED, 0),
                                                                        (0, SEED, 1)]
    assert [(r.repeat, r.seed) for r in finals] == [(1, SEED + 1), (2, SEED + 2)]
    chosen = choose([trial_from_record(r) for r in trials], "min")
    assert chosen is not None
    for final in finals:
        assert final.tuned_lr == chosen.lr == final.lr_used
        assert final.cell_id == next(t.cell_id for t in trials if t.lr_used == chosen.lr)
        assert final.tuning_cost_s == pytest.approx(sum(record_cost_s(t) for t in trials))
        assert final.tuning_cost_s == pytest.approx(
            sum(t.window_s + t.eval_time_s for t in trials))
        assert final.tuning_cost_j is None  # CPU: no energy counter
        assert (final.tune_trials, final.tune_trials_planned, final.tune_stop) == (
            2, 2, "all_trials")
        assert final.optimizer_state_bytes and final.optimizer_state_bytes > 0  # sgd momentum
    assert len({r.tune_group for r in records}) == 1
    assert read_manifest(run_dir).spec["tune"] == {"trials": 2, "budget_s": None}


def test_the_terminal_summary_names_the_lr_chosen_and_how_the_search_ended(tuned_run) -> None:
    _, output = tuned_run
    assert "the lr searches" in output and "all 2 trials ran" in output


def test_resume_replays_the_search_and_runs_only_what_is_missing(tuned_run,
                                                                 tmp_path: Path) -> None:
    source, _ = tuned_run
    run_dir = tmp_path / "t1"
    run_dir.mkdir()
    lines = (source / "cells.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["repeat"] != 2]  # stopped before seed 2
    (run_dir / "cells.jsonl").write_text("\n".join(kept) + "\n")
    manifest = json.loads((source / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "state": "interrupted"}))

    resumed = run_cli("converge", "--resume", "t1", "--out", str(tmp_path), "--no-report")
    assert resumed.exit_code == 0, resumed.output
    after = _lines(run_dir)
    assert after[:len(kept)] == [json.loads(line) for line in kept]  # nothing was redone
    [new] = after[len(kept):]
    assert (new["repeat"], new["seed"], new["tune_role"]) == (2, SEED + 2, "final")
    assert new["tuned_lr"] == json.loads(kept[-1])["tuned_lr"]


def test_the_budget_stops_the_trials_and_says_so(tmp_path: Path) -> None:
    result = run_cli("converge", "--preset", str(_preset(tmp_path)), "--out", str(tmp_path),
                     "--run-id", "b1", "--no-report", "--tune-lr", "3", "--tune-budget-s",
                     "0.001", "--seeds", "1")
    assert result.exit_code == 0, result.output
    records = load_run(tmp_path / "b1").records
    assert [r.tune_role for r in records] == ["trial", "final"]  # the first trial always runs
    final = records[-1]
    assert (final.tune_stop, final.tune_trials, final.tune_trials_planned) == ("budget", 1, 3)
    assert final.tune_budget_s == 0.001
    assert "budget spent" in result.output and "after 1 of 3 trials" in result.output


def test_dry_run_prints_each_groups_trial_lrs(tmp_path: Path) -> None:
    result = run_cli("converge", "--preset", str(_preset(tmp_path, ("sgd", "adam"))),
                     "--dry-run", "--tune-lr", "3")
    assert result.exit_code == 0, result.output
    assert "trial lrs 0.01, 0.00316, 0.0316" in result.output  # sgd
    assert "trial lrs 0.001, 0.000316, 0.00316" in result.output  # adam
    assert "fewest steps" in result.output


@pytest.mark.parametrize(("flags", "message"), [
    (["--tune-lr", "2", "--lr", "0.1"], "--tune-lr searches the learning rate itself"),
    (["--tune-budget-s", "5"], "--tune-budget-s bounds an lr search: give --tune-lr N"),
    (["--tune-lr", "0"], "--tune-lr"),
    (["--tune-lr", "2", "--tune-budget-s", "-1"], "--tune-budget-s"),
])
def test_bad_tuning_flags_exit_2_with_a_message(tmp_path: Path, flags: list[str],
                                                message: str) -> None:
    result = run_cli("converge", "--preset", str(_preset(tmp_path)), "--out", str(tmp_path),
                     "--dry-run", *flags)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_a_plain_run_is_not_resumed_as_a_tuned_one_nor_a_tuned_one_as_a_sweep(
        tuned_run, tmp_path: Path) -> None:
    plain = run_cli("converge", "--preset", str(_preset(tmp_path)), "--out", str(tmp_path),
                    "--run-id", "p1", "--no-report", "--seeds", "1", "--max-steps", "2",
                    "--eval-every", "1")
    assert plain.exit_code == 0, plain.output
    again = run_cli("converge", "--resume", "p1", "--out", str(tmp_path), "--tune-lr", "2",
                    "--no-report")
    assert again.exit_code == 2 and "it is not a tuned run" in again.output
    run_dir, _ = tuned_run
    sweep = run_cli("sweep", "--resume", run_dir.name, "--out", str(run_dir.parent),
                    "--no-report")
    assert sweep.exit_code == 2 and "tune:" in sweep.output


def test_a_trials_cost_is_its_clocks_its_energy_what_nvml_measured(tuned_run) -> None:
    import dataclasses

    run_dir, _ = tuned_run
    trial = next(r for r in load_run(run_dir).records if r.tune_role == "trial")
    on_gpu = dataclasses.replace(trial, telemetry={"energy_j": 12.5})
    assert trial_from_record(on_gpu).cost_j == 12.5
    assert trial_from_record(trial).cost_j is None  # the CPU: no energy counter
    failed = dataclasses.replace(trial, status="crashed", window_s=None, eval_time_s=None,
                                 started_at="2026-12-07T10:00:00+00:00",
                                 ended_at="2026-12-07T10:00:07.5+00:00")
    assert record_cost_s(failed) == 7.5  # it ran no clock: its wall seconds count


class _ScheduleFreeLike:
    """The boundary: an optimizer with its own train/eval switch (as schedulefree's have)."""

    def __init__(self) -> None:
        self.modes: list[str] = []

    def train(self) -> None:
        self.modes.append("train")

    def eval(self) -> None:
        self.modes.append("eval")


def test_the_converge_loop_switches_an_optimizer_that_has_modes_and_leaves_others() -> None:
    import torch

    fake = _ScheduleFreeLike()
    set_train_mode(fake, True)
    set_train_mode(fake, False)
    assert fake.modes == ["train", "eval"]
    plain = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    set_train_mode(plain, False)  # no switch: nothing happens, nothing breaks
    set_train_mode(None, True)
