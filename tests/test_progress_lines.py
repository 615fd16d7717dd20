"""The sweep's progress while a slow cell runs (issue 30): off a terminal a line when a cell
starts and a heartbeat every N seconds; on a terminal an ETA that moves with the running cell.
The clock is faked; the ticker thread is off, so every line comes from an explicit tick."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from bigtrain.run.console import LineProgress, RichProgress, eta_s, human_duration
from test_compare_support import ok_record, steps


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _job(cell_id: str, label: str, repeat: int = 0):
    return SimpleNamespace(cell=SimpleNamespace(cell_id=cell_id, label=label), repeat=repeat)


def test_eta_counts_down_then_grows_while_a_cell_outlasts_the_mean():
    assert eta_s(done=0, total=3, done_elapsed_s=0, running_elapsed_s=5) is None
    assert eta_s(done=1, total=3, done_elapsed_s=10, running_elapsed_s=5) == 15
    assert eta_s(done=1, total=3, done_elapsed_s=10, running_elapsed_s=10) == 10
    # past the mean the running cell counts as at least its elapsed time, in the mean too
    assert eta_s(done=1, total=3, done_elapsed_s=10, running_elapsed_s=30) == 20
    assert eta_s(done=1, total=3, done_elapsed_s=10, running_elapsed_s=60) == 35
    assert eta_s(done=3, total=3, done_elapsed_s=30, running_elapsed_s=0) == 0
    assert human_duration(42) == "42 s" and human_duration(185) == "3 min 05 s"
    assert human_duration(3720) == "1 h 02 min"


def test_piped_progress_says_when_a_cell_starts_and_beats_while_it_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    progress = LineProgress(heartbeat_s=30, clock=clock, ticker=False)
    progress.begin(tmp_path, [], 2)
    capsys.readouterr()
    progress.cell_started(_job("c0", "mlp:seed sgd"))
    assert capsys.readouterr().err == "1/2 started  mlp:seed sgd\n"
    clock.now += 29.9
    progress.tick()
    assert capsys.readouterr().err == ""  # not yet
    clock.now += 0.1
    progress.tick()
    assert capsys.readouterr().err == "0/2 still running: mlp:seed sgd (30 s)\n"  # no rate yet
    clock.now += 20
    progress.tick()
    assert capsys.readouterr().err == ""
    clock.now += 10
    progress.tick()
    assert "still running: mlp:seed sgd (1 min 00 s)" in capsys.readouterr().err
    progress.cell_finished(ok_record("r", "c0", 0, steps(0.01)))
    out = capsys.readouterr()
    assert out.out.startswith("1/2 ok")
    clock.now += 100
    progress.tick()
    assert capsys.readouterr().err == ""  # nothing runs: nothing to beat for
    progress.cell_started(_job("c1", "mlp:seed adam", repeat=1))
    assert capsys.readouterr().err == "2/2 started  mlp:seed adam #1\n"
    clock.now += 30
    progress.tick()
    # one cell took 60 s: the running one has 30 s to go
    assert capsys.readouterr().err == ("1/2 still running: mlp:seed adam #1 (30 s); about 30 s "
                                       "left\n")


def test_the_heartbeat_period_is_configurable_and_zero_turns_it_off(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    for every_s, beats in ((5, 12), (0, 0)):
        progress = LineProgress(heartbeat_s=every_s, clock=clock, ticker=False)
        progress.begin(tmp_path, [], 1)
        progress.cell_started(_job("c0", "slow cell"))
        capsys.readouterr()
        for _ in range(60):
            clock.now += 1
            progress.tick()
        assert capsys.readouterr().err.count("still running") == beats


def test_the_terminal_eta_moves_with_the_running_cell(tmp_path: Path) -> None:
    clock = FakeClock()
    screen = io.StringIO()
    progress = RichProgress(Console(file=screen, force_terminal=True, width=200), refresh_s=0,
                            clock=clock)
    progress.begin(tmp_path, [], 3)
    assert progress.eta_text() == "-:--:--"
    progress.cell_started(_job("c0", "a"))
    clock.now += 10
    progress.cell_finished(ok_record("r", "c0", 0, steps(0.01)))
    progress.cell_started(_job("c1", "b"))
    clock.now += 5
    assert progress.eta_text() == "0:00:15"
    clock.now += 25
    assert progress.eta_text() == "0:00:20"
    clock.now += 30
    progress.tick()
    assert progress.eta_text() == "0:00:35"
    assert "ETA 0:00:35" in screen.getvalue()  # the redraw shows it, not only the estimate
