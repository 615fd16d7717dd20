"""Issue 12 items 7 and 11: a cell timeout kills the worker's whole process tree, helpers that
left its session included, and a sweep leaves no temporary worker-log folder behind."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psutil
import pytest

from bigtrain.run.local_pool import LocalPoolExecutor
from bigtrain.run.sweep import SweepOptions, run_sweep
from bigtrain.cells.spec import spec_from_preset
from conftest import write_preset

ESCAPE_TIMEOUT_S = 20  # generous: the fault starts a Python process before it hangs


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (a container's init may be slow to reap)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int], within_s: float = 30) -> list[int]:
    """The pids still alive after `within_s` (SIGKILL is sent synchronously; dying is not)."""
    deadline = time.monotonic() + within_s
    alive = [pid for pid in pids if not _gone(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if not _gone(pid)]
    return alive


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own temporary folder, so leftovers of other sweeps cannot confuse it."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_timeout_kills_descendants_that_left_the_workers_session(
        tmp_path: Path, faults: None, private_tmp: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pids_file = tmp_path / "escaped.pids"
    monkeypatch.setenv("BIGTRAIN_ESCAPE_PIDS", str(pids_file))
    preset = write_preset(tmp_path, ["fault:escape", "mlp:seed"], timeout=ESCAPE_TIMEOUT_S)
    outcome = run_sweep(spec_from_preset(str(preset)),
                        SweepOptions(out_dir=tmp_path / "results", run_id="escape"))
    escape, seed = outcome.records
    assert escape.status == "timeout", escape.reason
    assert "process tree killed" in escape.reason
    assert seed.status == "ok"  # the next cell ran in a fresh worker
    escaped = [int(line) for line in pids_file.read_text().split()]
    assert len(escaped) == 2  # a child in its own session, and a double-forked orphan
    assert _wait_gone(escaped) == [], "processes that left the worker's session survived"
    assert _wait_gone([escape.worker_pid]) == []


def test_a_sweep_removes_its_temporary_worker_log_folder(tmp_path: Path, faults: None,
                                                         private_tmp: Path) -> None:
    # A crash reads the log's tail into its record first: nothing needs the folder afterwards.
    preset = write_preset(tmp_path, ["fault:segv", "mlp:seed"])
    outcome = run_sweep(spec_from_preset(str(preset)),
                        SweepOptions(out_dir=tmp_path / "results", run_id="logs"))
    assert [r.status for r in outcome.records] == ["crashed", "ok"]
    assert list(private_tmp.glob("bigtrain-workers-*")) == []


def test_the_pool_makes_its_folder_lazily_and_keeps_a_chosen_one(tmp_path: Path,
                                                                 private_tmp: Path) -> None:
    unused = LocalPoolExecutor(["cpu"], cell_timeout_s=10)
    unused.shutdown()  # a pool that never started a worker made no folder
    assert list(private_tmp.iterdir()) == []

    pool = LocalPoolExecutor(["cpu"], cell_timeout_s=10)
    temporary = pool.log_dir
    assert temporary.is_dir() and temporary.parent == private_tmp
    pool.shutdown()
    assert not temporary.exists()

    chosen = tmp_path / "logs"
    chosen.mkdir()
    (chosen / "worker-cpu-0.log").write_text("kept\n")
    kept = LocalPoolExecutor(["cpu"], cell_timeout_s=10, log_dir=chosen)
    kept.shutdown()
    assert (chosen / "worker-cpu-0.log").read_text() == "kept\n"
