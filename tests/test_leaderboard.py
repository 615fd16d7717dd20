"""The tuned leaderboard in `bigbench report`: synthetic tuned converge runs (written through the
real store from a real fixture record, with seeded, known times) become a ranking whose numbers
are recomputed here by hand; a winner is named only beyond the noise; trials are kept apart."""

from __future__ import annotations

import csv
import dataclasses
import statistics
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli

from bigtrain.compare.gate import compare_run_dirs
from bigtrain.report.data import load_report_data
from bigtrain.report.leaderboard import NO_WINNER, WINNER, leaderboard_frames
from bigtrain.results.schema import Manifest, StepTimeStats
from bigtrain.results.store import RunWriter, load_run

FIXTURE = Path(__file__).parent / "fixtures" / "runs" / "cpu-2threads"
PARAM_BYTES = 40_000
#: optimizer -> (tuned lr, step seconds, state bytes, per final seed: seconds to target or None)
CLEAR = {
    "adam": (3.16e-3, 0.010, 2 * PARAM_BYTES, [1.00, 1.02, 0.98]),
    "adamw": (1e-3, 0.012, 2 * PARAM_BYTES, [2.00, 2.05, 1.95]),
    "sgd": (0.0316, 0.008, PARAM_BYTES, [None, 3.0, None]),
}
CLOSE = {
    "adam": (3.16e-3, 0.010, 2 * PARAM_BYTES, [1.00, 1.10, 0.90]),
    "adamw": (1e-3, 0.012, 2 * PARAM_BYTES, [1.02, 0.95, 1.12]),
}
TRIAL_COST_S = (3.0, 4.0, 5.0)  # training + evaluation of each group's three trials
TARGET = 0.95


def write_tuned_run(root: Path, run_id: str, groups: dict, *, state: bool = True) -> Path:
    """A tuned run: per optimizer three trials (repeat 0, seed 0) and three finals (seeds 1-3)."""
    fixture = load_run(FIXTURE)
    template = next(r for r in fixture.records if r.status == "ok" and len(r.step_times_s) >= 5)
    manifest = Manifest(**{**dataclasses.asdict(fixture.manifest), "run_id": run_id,
                           "state": "complete"})
    path = root / run_id
    with RunWriter(path) as writer:
        writer.write_manifest(manifest)
        for optimizer, (lr, step_s, state_bytes, seconds) in groups.items():
            group = f"group-{optimizer}"
            common = dict(run_id=run_id, model="mlp:digits", optimizer=optimizer,  # noqa: C408
                          batch_norm="off", precision="fp32", device="cpu", batch_size=64,
                          protocol="converge", target_metric="accuracy", target_value=TARGET,
                          target_direction="max", tune_group=group,
                          step_time_s=StepTimeStats.from_samples([step_s] * 5),
                          step_times_s=(step_s,) * 5,
                          optimizer_state_bytes=state_bytes if state else None)
            trial_lrs = (lr, lr / 3.16, lr * 3.16)
            for index, (trial_lr, cost) in enumerate(zip(trial_lrs, TRIAL_COST_S, strict=True)):
                reached = index == 0
                writer.append(dataclasses.replace(
                    template, **common, cell_id=f"{optimizer}-t{index}", repeat=0, seed=0,
                    lr=repr(trial_lr), lr_used=trial_lr,
                    status="ok" if reached else "not_reached",
                    reason=None if reached else "best accuracy 0.9 < 0.95",
                    steps_to_target=40 if reached else None,
                    time_to_target_s=cost - 1.0 if reached else None, window_s=cost - 1.0,
                    eval_time_s=1.0, best_value=0.96 if reached else 0.9,
                    tune_role="trial", tune_trial_index=index, tune_trials_planned=3))
            for repeat, time_s in enumerate(seconds, start=1):
                reached = time_s is not None
                writer.append(dataclasses.replace(
                    template, **common, cell_id=f"{optimizer}-t0", repeat=repeat, seed=repeat,
                    lr=repr(lr), lr_used=lr, status="ok" if reached else "not_reached",
                    reason=None if reached else "best accuracy 0.9 < 0.95",
                    steps_to_target=round(time_s / step_s) if reached else None,
                    time_to_target_s=time_s, window_s=time_s or 5.0, eval_time_s=0.5,
                    best_value=0.96 if reached else 0.9, tune_role="final", tuned_lr=lr,
                    tuning_cost_s=sum(TRIAL_COST_S), tuning_cost_j=None, tune_trials=3,
                    tune_trials_planned=3, tune_stop="all_trials"))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def clear_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tuned")
    run = write_tuned_run(root, "tuned-clear", CLEAR)
    result = run_cli("report", str(run), "-o", str(root / "report"))
    assert result.exit_code == 0, result.output
    return run, root / "report"


def test_the_leaderboard_ranks_by_median_time_to_target_at_the_tuned_lr(clear_report) -> None:
    _, report = clear_report
    rows = read_csv(report / "tables" / "leaderboard.csv")
    assert [r["optimizer"] for r in rows] == ["adam", "adamw", "sgd"]  # not reached: last, shown
    adam, adamw, sgd = rows
    assert adam["tuned lr"] == "0.00316"  # trials at 0.00316, /3.16 and x3.16: inside the grid
    assert float(adam["time to target (s, median)"]) == pytest.approx(1.00)
    assert float(adam["time (s, min)"]) == pytest.approx(0.98)
    assert float(adam["time (s, max)"]) == pytest.approx(1.02)
    assert adam["seeds reached"] == "3/3" and sgd["seeds reached"] == "1/3"
    assert sgd["time to target (s, median)"] == ""  # one seed of three: never, as a median
    assert float(sgd["time (s, min)"]) == 3.0
    assert float(adamw["steps to target (median)"]) == statistics.median(
        round(t / 0.012) for t in CLEAR["adamw"][3])
    # step cost and state memory against AdamW's
    assert float(adam["step cost vs adamw ×"]) == pytest.approx(0.010 / 0.012)
    assert float(sgd["state vs adamw ×"]) == pytest.approx(0.5)
    assert float(adamw["state vs adamw ×"]) == pytest.approx(1.0)
    assert float(adam["tuning cost (s)"]) == pytest.approx(sum(TRIAL_COST_S))
    assert adam["trials"] == "3 of 3"


def test_an_lr_chosen_at_the_end_of_its_grid_is_marked() -> None:
    from bigtrain.report.leaderboard import grid_edge

    assert grid_edge(0.01, (0.001, 0.00316, 0.01)) == "highest tried"
    assert grid_edge(0.001, (0.001, 0.00316, 0.01)) == "lowest tried"
    assert grid_edge(0.00316, (0.001, 0.00316, 0.01)) == ""
    assert grid_edge(0.001, (0.001,)) == ""  # one trial: no grid to be at the end of


def test_a_winner_is_named_when_the_runner_up_is_slower_beyond_the_noise(clear_report) -> None:
    run, report = clear_report
    [(_, _, (outcome, why))] = leaderboard_frames(load_report_data([run]))
    assert outcome == WINNER and why.startswith("adam:") and "beyond the noise" in why
    assert "welch" in why
    assert "winner adam" in (report / "report.md").read_text(encoding="utf-8")


def test_the_html_report_opens_with_the_leaderboard_and_its_figure(clear_report) -> None:
    _, report = clear_report
    html = (report / "index.html").read_text(encoding="utf-8")
    assert html.index("Tuned leaderboard") < html.index("Time to target")
    assert "Learning-rate trials" in html
    figure = report / "figures" / "leaderboard-time-vs-state.png"
    assert figure.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_no_winner_is_named_inside_the_noise(tmp_path: Path) -> None:
    run = write_tuned_run(tmp_path, "tuned-close", CLOSE)
    [(_, ranked, (outcome, why))] = leaderboard_frames(load_report_data([run]))
    assert outcome == NO_WINNER and "inside the noise" in why
    assert list(ranked["opt_label"]) == ["adam", "adamw"]  # still ranked, by the medians


def test_a_runner_up_that_reached_in_some_seeds_is_not_beaten_by_counting(tmp_path: Path) -> None:
    groups = {"adam": (1e-3, 0.01, 1, [1.0, 1.1, 0.9]), "adamw": (1e-3, 0.01, 1, [2.0, None, None])}
    run = write_tuned_run(tmp_path, "tuned-partial", groups)
    [(_, _, (outcome, why))] = leaderboard_frames(load_report_data([run]))
    assert outcome == NO_WINNER and "1 of 3 seeds" in why
    groups["adamw"] = (1e-3, 0.01, 1, [None, None, None])  # none reached: behind, whatever noise
    run = write_tuned_run(tmp_path, "tuned-none", groups)
    [(_, _, (outcome, why))] = leaderboard_frames(load_report_data([run]))
    assert outcome == WINNER and "none of its 3 seeds" in why


def test_one_seed_never_names_a_winner(tmp_path: Path) -> None:
    groups = {name: (lr, s, b, times[:1]) for name, (lr, s, b, times) in CLEAR.items()}
    run = write_tuned_run(tmp_path, "tuned-one-seed", groups)
    [(_, _, (outcome, why))] = leaderboard_frames(load_report_data([run]))
    assert outcome == NO_WINNER and "noise" in why


def test_a_leader_missing_the_target_in_a_seed_is_not_named(tmp_path: Path) -> None:
    groups = {"adam": (1e-3, 0.01, 1, [1.0, None, 1.1]), "adamw": (1e-3, 0.01, 1, [None] * 3)}
    run = write_tuned_run(tmp_path, "tuned-missed", groups)
    [(_, _, (outcome, why))] = leaderboard_frames(load_report_data([run]))
    assert outcome == NO_WINNER and "2 of 3 seeds" in why


def test_trials_are_listed_apart_and_left_out_of_time_to_target(clear_report) -> None:
    _, report = clear_report
    trials = read_csv(report / "tables" / "tuning_trials.csv")
    assert len(trials) == 9
    assert [t["trial"] for t in trials if t["optimizer"] == "adam"] == ["0", "1", "2"]
    assert [float(t["training + evaluation (s)"]) for t in trials
            if t["optimizer"] == "adam"] == list(TRIAL_COST_S)
    converge = read_csv(report / "tables" / "converge.csv")
    # the trial at the chosen lr shares its cell with the finals: it is not a fourth seed
    assert {row["seeds reached"].split("/")[1] for row in converge if row["lr"] != ""} == {"3"}


def test_the_compare_gate_leaves_the_trials_out(clear_report) -> None:
    run, _ = clear_report
    comparison = compare_run_dirs(run, run)
    compared = {cell.cell_id for cell in comparison.cells}
    assert compared == {"adam-t0", "adamw-t0", "sgd-t0"}  # the finals' cells only
    adam = next(c for c in comparison.cells if c.cell_id == "adam-t0")
    assert adam.baseline_repeats == 3  # the three final seeds, not the trial beside them


def test_the_exports_leave_the_trials_out(clear_report) -> None:
    from bigtrain.compare.exports import github_action_benchmark

    run, _ = clear_report
    entries = github_action_benchmark(load_run(run))
    assert entries and all("cell_id=" in e["extra"] for e in entries)
    exported = {e["extra"].split("cell_id=")[1].split(";")[0] for e in entries}
    assert exported == {"adam-t0", "adamw-t0", "sgd-t0"}  # no cell only a trial ran
    assert not any("repeats=4" in e["extra"] for e in entries)  # the trial is not a 4th seed


def test_the_leaderboard_tolerates_records_without_optimizer_state(tmp_path: Path) -> None:
    run = write_tuned_run(tmp_path, "tuned-no-state", CLEAR, state=False)
    result = run_cli("report", str(run), "-o", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    header = read_csv(tmp_path / "report" / "tables" / "leaderboard.csv")[0].keys()
    assert not any("state" in column for column in header)


def test_an_untuned_converge_report_has_no_leaderboard(tmp_path: Path) -> None:
    from converge_runs import write_converge_run

    run = write_converge_run(tmp_path)
    assert leaderboard_frames(load_report_data([run])) == []


def test_hostile_optimizer_names_stay_text_in_every_output(tmp_path: Path) -> None:
    from converge_runs import HOSTILE

    groups = {HOSTILE: CLEAR["adam"], "adamw": CLEAR["adamw"]}
    run = write_tuned_run(tmp_path, "tuned-hostile", groups)
    result = run_cli("report", str(run), "-o", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output
    html = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "<script>" not in markdown


def test_two_tuned_runs_get_a_board_each_in_one_report(clear_report, tmp_path: Path) -> None:
    run, _ = clear_report
    other = write_tuned_run(tmp_path, "tuned-close-2", CLOSE)
    boards = leaderboard_frames(load_report_data([run, other]))
    assert len(boards) == 2
    assert {len(ranked) for _, ranked, _ in boards} == {3, 2}
    result = run_cli("report", str(run), str(other), "-o", str(tmp_path / "both"))
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "both" / "tables" / "leaderboard.csv")
    assert len({r["source"] for r in rows}) == 2


def test_the_figure_numbers_every_search_by_rank_and_goes_log_only_when_values_spread() -> None:
    """A panel of optimizers whose state spans 200x and times 80x: log axes, a legend entry per
    search in rank order (the one that never reached included), schedules told apart by marker."""
    from bigtrain.report.leaderboard_figures import LOG_SPAN, _draw_board, _log_if_wide
    from bigtrain.report.style import plt

    assert _log_if_wide([3_432.0, 766_840.0]) and not _log_if_wide([100.0, 200.0])
    assert not _log_if_wide([0.0, 1e6])  # a zero has no place on a log axis
    assert not _log_if_wide([1.0, LOG_SPAN])
    nan = float("nan")
    ranked = pd.DataFrame({
        "rank": [1, 2, 3], "opt_label": ["adamw constant", "adamw warmup-cosine", "sgd constant"],
        "schedule": ["constant", "warmup-cosine", "constant"],
        "seconds_median": [0.05, 4.0, nan], "seconds_min": [0.04, 3.0, nan],
        "seconds_max": [0.06, 5.0, nan], "reached": [2, 2, 0], "seeds": [2, 2, 2],
        "state_bytes": [3_432.0, 766_840.0, 104_488.0]})
    fig, ax = plt.subplots()
    try:
        _draw_board(ax, ranked, "state_bytes", {})
        labels = [text.get_text() for text in ax.get_legend().get_texts()]
        assert labels == ["1. adamw constant", "2. adamw warmup-cosine",
                          "3. sgd constant (not reached, 0/2 seeds)"]
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert [t.get_text() for t in ax.texts] == ["1", "2", "3"]
    finally:
        plt.close(fig)
