"""Issue 12 item 6: two signals in quick succession end a sweep as cleanly as one: exit 130, the
manifest `interrupted` with an end time, no traceback, every finished record intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bigtrain.results.store import CELLS_NAME, load_run
from bigtrain.run.sweep import InterruptGuard, SweepInterrupted
from conftest import REPO, TESTS_DIR, write_preset


# -- the guard itself, with signals sent to this process ----------------------------------------
@pytest.fixture
def restored_handlers():
    """Whatever a test does to SIGINT/SIGTERM, pytest gets its own handlers back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_armed_the_first_signal_raises_and_later_ones_are_ignored(restored_handlers) -> None:
    with InterruptGuard() as guard:
        guard.arm()
        with pytest.raises(SweepInterrupted) as raised:
            signal.raise_signal(signal.SIGINT)
        assert raised.value.signum == signal.SIGINT
        # Clean-up runs now: neither a second Ctrl-C nor a SIGTERM may cut it short.
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)
        guard.arm()  # even re-arming cannot raise a second interrupt
        signal.raise_signal(signal.SIGINT)
    assert guard.received == signal.SIGINT


def test_a_signal_before_arming_raises_when_armed(restored_handlers) -> None:
    with InterruptGuard() as guard:
        signal.raise_signal(signal.SIGTERM)  # while the run folder is being opened: noted only
        assert guard.received == signal.SIGTERM
        with pytest.raises(SweepInterrupted, match="SIGTERM"):
            guard.arm()


def test_disarmed_signals_are_noted_not_raised(restored_handlers) -> None:
    with InterruptGuard() as guard:
        guard.arm()
        guard.disarm()
        signal.raise_signal(signal.SIGINT)
    assert guard.received == signal.SIGINT


def test_leaving_restores_handlers_or_keeps_ignoring_after_a_signal(restored_handlers) -> None:
    before = signal.getsignal(signal.SIGINT)
    with InterruptGuard(ignore_after_signal=True):
        pass  # no signal came: the caller's handlers come back
    assert signal.getsignal(signal.SIGINT) is before
    with InterruptGuard(ignore_after_signal=False) as guard:
        signal.raise_signal(signal.SIGINT)
    assert guard.received and signal.getsignal(signal.SIGINT) is before
    with InterruptGuard(ignore_after_signal=True):
        signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


# -- real sweeps, interrupted twice -------------------------------------------------------------
def _wait_for_records(cells: Path, count: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cells.exists() and cells.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{cells} did not reach {count} records")


@pytest.mark.parametrize(("first", "second", "gap_s"), [
    (signal.SIGINT, signal.SIGINT, 0.001),
    (signal.SIGINT, signal.SIGINT, 0.01),
    (signal.SIGINT, signal.SIGINT, 0.03),
    (signal.SIGTERM, signal.SIGINT, 0.005),
])
def test_two_quick_signals_end_the_sweep_cleanly(tmp_path: Path, first: int, second: int,
                                                 gap_s: float) -> None:
    models = ["mlp:seed", "transformer:tiny", "cnn:tiny", "rnn:lstm-tiny"]
    preset = write_preset(tmp_path, models)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(REPO)])}
    process = subprocess.Popen(
        [sys.executable, "-m", "bigtrain.cli", "sweep", "--preset", str(preset), "--out",
         str(tmp_path / "results"), "--run-id", "twice", "--duration", "1", "--no-report"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    run_dir = tmp_path / "results" / "twice"
    try:
        _wait_for_records(run_dir / CELLS_NAME, 1)
        process.send_signal(first)
        time.sleep(gap_s)
        process.send_signal(second)
        output = process.communicate(timeout=120)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    run = load_run(run_dir)
    assert run.manifest.state == "interrupted"
    assert run.manifest.ended_at  # clean-up finished: the manifest got its end time
    assert 1 <= len(run.records) < len(models)
    assert run.truncated_lines == ()
