"""Every cell isolated: faults become records, the sweep goes on, kills and resumes lose nothing.

The faults come from `fault_workloads.py` (test-only, loaded in workers via BIGTRAIN_PLUGINS).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bigtrain.common.errors import BadInput
from bigtrain.results.store import CELLS_NAME, MANIFEST_NAME, load_run
from bigtrain.run.sweep import SweepOptions, run_sweep
from bigtrain.cells.spec import spec_from_preset
from conftest import REPO, TESTS_DIR, write_preset

# Each fault is followed by a healthy cell, which must still run and be ok.
FAULT_SEQUENCE = ["fault:segv", "mlp:seed", "fault:hang", "fault:healthy", "fault:raise",
                  "transformer:tiny", "fault:silent-exit", "rnn:lstm-tiny", "fault:oom",
                  "mlp:small", "fault:nan", "cnn:tiny"]
# The hang fault waits this long; healthy cells share the limit, and on a 2-core box with other
# work a cnn:tiny or rnn:lstm-tiny cell (worker start, build, warm-up, FLOP count) took 17-20 s.
HANG_TIMEOUT_S = 40


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory: pytest.TempPathFactory):
    """One sweep through every fault, each followed by a healthy cell."""
    mp = pytest.MonkeyPatch()
    mp.setenv("BIGTRAIN_PLUGINS", "fault_workloads")
    import fault_workloads  # noqa: F401  (registers the family in this process)

    folder = tmp_path_factory.mktemp("faults")
    preset = write_preset(folder, FAULT_SEQUENCE, timeout=HANG_TIMEOUT_S)
    outcome = run_sweep(spec_from_preset(str(preset)),
                        SweepOptions(out_dir=folder / "results", run_id="faults"))
    mp.undo()
    return outcome, load_run(outcome.run_dir)


def _by_model(run) -> dict:  # noqa: ANN001
    return {r.model: r for r in run.records}


@pytest.mark.parametrize(
    ("fault", "status", "reason_fragment", "next_model"),
    [
        ("fault:segv", "crashed", "worker killed by SIGSEGV", "mlp:seed"),
        ("fault:hang", "timeout", f"exceeded the {HANG_TIMEOUT_S} s limit", "fault:healthy"),
        ("fault:raise", "error", "ValueError: injected failure in forward", "transformer:tiny"),
        ("fault:silent-exit", "error", "exited with code 0 without sending a result",
         "rnn:lstm-tiny"),
        ("fault:oom", "oom", "alloc", "mlp:small"),
        ("fault:nan", "diverged", "non-finite loss", "cnn:tiny"),
    ],
)
def test_fault_is_recorded_and_the_next_cell_runs(fault_run, fault: str, status: str,
                                                  reason_fragment: str, next_model: str) -> None:
    outcome, run = fault_run
    records = _by_model(run)
    assert records[fault].status == status
    assert reason_fragment.lower() in records[fault].reason.lower()
    assert records[next_model].status == "ok"
    assert records[next_model].step_time_s.n >= 3


def test_fault_run_file_is_valid_and_complete(fault_run) -> None:
    outcome, run = fault_run
    assert [r.model for r in run.records] == FAULT_SEQUENCE  # each cell once, in order
    assert len(run.history) == len(FAULT_SEQUENCE)
    assert run.truncated_lines == ()
    assert run.manifest.state == "complete"
    assert outcome.exit_code == 1  # failed cells make the sweep exit 1


def test_failures_carry_the_tail_of_their_traceback_or_stderr(fault_run) -> None:
    records = _by_model(fault_run[1])
    assert "injected failure in forward" in records["fault:raise"].traceback_tail
    assert "Traceback" in records["fault:raise"].traceback_tail
    assert records["fault:oom"].traceback_tail


# A death or timeout takes the worker with it; a cell that failed in Python leaves a healthy
# worker, which runs the next cell (issue 9: a fresh CUDA context costs ~12 s per failure). Until
# then every failure discarded its worker; this test asserted a new pid after each of them.
WORKER_GONE = {"fault:segv", "fault:hang", "fault:silent-exit"}
WORKER_KEPT = {"fault:raise", "fault:oom", "fault:nan"}


def test_a_worker_is_replaced_after_a_death_and_kept_after_a_python_failure(fault_run) -> None:
    records = list(fault_run[1].records)
    pids_after_failure = {
        failed.model: (failed.worker_pid, following.worker_pid)
        for failed, following in zip(records, records[1:]) if failed.failed
    }
    assert set(pids_after_failure) == WORKER_GONE | WORKER_KEPT
    for model, (failed_pid, next_pid) in pids_after_failure.items():
        assert (failed_pid == next_pid) == (model in WORKER_KEPT), model


def test_a_worker_is_kept_after_an_error_and_replaced_when_unhealthy(tmp_path: Path,
                                                                     faults: None) -> None:
    preset = write_preset(tmp_path, ["fault:poison", "fault:healthy", "fault:raise", "mlp:seed"])
    outcome = run_sweep(spec_from_preset(str(preset)),
                        SweepOptions(out_dir=tmp_path, run_id="health"))
    poison, healthy, raised, seed = outcome.records
    assert [r.status for r in outcome.records] == ["error", "ok", "error", "ok"]
    assert "leaves the process unhealthy" in poison.reason
    assert poison.worker_pid != healthy.worker_pid  # it said it was unhealthy: replaced
    assert healthy.worker_pid == raised.worker_pid == seed.worker_pid  # kept after the error
    assert outcome.workers_started == 2


def test_timeout_kills_the_whole_worker_process_tree(fault_run) -> None:
    hung = _by_model(fault_run[1])["fault:hang"]
    with pytest.raises(ProcessLookupError):
        os.kill(hung.worker_pid, 0)


def test_reused_worker_reports_per_cell_peak_memory(tmp_path: Path, faults: None) -> None:
    preset = write_preset(tmp_path, ["fault:ballast", "mlp:seed"])
    outcome = run_sweep(spec_from_preset(str(preset)),
                        SweepOptions(out_dir=tmp_path, run_id="reuse"))
    ballast, seed = outcome.records
    assert ballast.status == seed.status == "ok"
    assert ballast.worker_pid == seed.worker_pid  # the same worker ran both
    assert outcome.workers_started == 1
    # The ballast holds 400 MiB; the seed MLP must not inherit that peak.
    assert ballast.peak_rss_bytes - seed.peak_rss_bytes > 300 * 2**20


def test_repeats_are_interleaved_in_fresh_workers(tmp_path: Path) -> None:
    preset = write_preset(tmp_path, ["mlp:seed", "transformer:tiny"])
    spec = spec_from_preset(str(preset), {"repeats": 2})
    outcome = run_sweep(spec, SweepOptions(out_dir=tmp_path, run_id="rep"))
    order = [(r.model, r.repeat) for r in outcome.records]
    assert order == [("mlp:seed", 0), ("transformer:tiny", 0),
                     ("mlp:seed", 1), ("transformer:tiny", 1)]
    assert outcome.records[0].worker_pid != outcome.records[2].worker_pid
    assert len({r.cell_id for r in outcome.records}) == 2


# -- resume ------------------------------------------------------------------------------------
def test_resume_refuses_a_changed_spec_or_machine_unless_forced(tmp_path: Path) -> None:
    preset = write_preset(tmp_path, ["mlp:seed"])
    run_sweep(spec_from_preset(str(preset)), SweepOptions(out_dir=tmp_path, run_id="r"))
    changed = spec_from_preset(str(preset), {"optimizer": "adam"})
    with pytest.raises(BadInput, match=r"cannot resume.*optimizer: \['sgd'\] -> \['adam'\].*--force"):
        run_sweep(changed, SweepOptions(out_dir=tmp_path, resume="r"))

    manifest_path = tmp_path / "r" / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["environment"]["torch_version"] = "1.0.0"
    manifest_path.write_text(json.dumps(manifest))
    same = spec_from_preset(str(preset))
    with pytest.raises(BadInput, match=r"torch_version: '1\.0\.0' ->"):
        run_sweep(same, SweepOptions(out_dir=tmp_path, resume="r"))
    forced = run_sweep(same, SweepOptions(out_dir=tmp_path, resume="r", force=True))
    assert forced.exit_code == 0


def test_resume_runs_missing_cells_and_retry_failed_reruns_failures(tmp_path: Path,
                                                                    faults: None) -> None:
    preset = write_preset(tmp_path, ["fault:raise", "mlp:seed"])
    spec = spec_from_preset(str(preset))
    first = run_sweep(spec, SweepOptions(out_dir=tmp_path, run_id="r"))
    assert [r.status for r in first.records] == ["error", "ok"]
    cells = tmp_path / "r" / CELLS_NAME
    lines = cells.read_text().splitlines(keepends=True)
    cells.write_text(lines[0])  # as if the sweep had been killed after the first cell

    resumed = run_sweep(spec, SweepOptions(out_dir=tmp_path, resume="r"))
    assert [(r.model, r.status) for r in resumed.records] == [("fault:raise", "error"),
                                                            ("mlp:seed", "ok")]
    assert len(load_run(tmp_path / "r").history) == 2  # the failure was not rerun

    retried = run_sweep(spec, SweepOptions(out_dir=tmp_path, resume="r", retry_failed=True))
    history = load_run(tmp_path / "r").history
    assert [r.model for r in history] == ["fault:raise", "mlp:seed", "fault:raise"]
    assert retried.exit_code == 1  # it failed again, deterministically


def test_a_retry_that_succeeds_makes_the_sweep_succeed(tmp_path: Path, faults: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIGTRAIN_FLAKY_MARKER", str(tmp_path / "attempted"))
    preset = write_preset(tmp_path, ["fault:flaky", "mlp:seed"])
    spec = spec_from_preset(str(preset))
    first = run_sweep(spec, SweepOptions(out_dir=tmp_path, run_id="r"))
    assert [r.status for r in first.records] == ["error", "ok"] and first.exit_code == 1
    retried = run_sweep(spec, SweepOptions(out_dir=tmp_path, resume="r", retry_failed=True))
    assert [(r.model, r.status) for r in retried.records] == [("fault:flaky", "ok"),
                                                            ("mlp:seed", "ok")]
    assert retried.exit_code == 0
    assert load_run(tmp_path / "r").manifest.state == "complete"


def test_resume_with_a_flag_compares_against_the_runs_own_spec(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bigtrain.cli import main

    preset = write_preset(tmp_path, ["mlp:seed"])
    run_sweep(spec_from_preset(str(preset)), SweepOptions(out_dir=tmp_path, run_id="r"))
    result = CliRunner().invoke(main, ["sweep", "--resume", "r", "--out", str(tmp_path),
                                       "--duration", "2", "--no-report"])
    assert result.exit_code == 2
    # Only the flag's change is named, not the differences from some other preset.
    assert "measure:" in result.output and "duration_s': 2" in result.output
    assert "model:" not in result.output and "optimizer:" not in result.output


# -- signals and kills (real processes) --------------------------------------------------------
def _sweep_process(tmp_path: Path, preset: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(REPO)]),
           "BIGTRAIN_PLUGINS": "fault_workloads"}
    return subprocess.Popen(
        [sys.executable, "-m", "bigtrain.cli", "sweep", "--preset", str(preset), "--out",
         str(tmp_path / "results"), "--no-report", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
    )


def _wait_for_records(cells: Path, count: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cells.exists() and cells.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{cells} did not reach {count} records")


def _worker_pids(run_dir: Path) -> list[int]:
    return [r.worker_pid for r in load_run(run_dir).history if r.worker_pid]


def test_sigint_stops_cleanly_and_resume_completes(tmp_path: Path) -> None:
    models = ["mlp:seed", "transformer:tiny", "cnn:tiny", "rnn:lstm-tiny"]
    preset = write_preset(tmp_path, models)
    process = _sweep_process(tmp_path, preset, "--run-id", "int", "--duration", "1")
    run_dir = tmp_path / "results" / "int"
    _wait_for_records(run_dir / CELLS_NAME, 1)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 130, output
    run = load_run(run_dir)
    assert run.manifest.state == "interrupted"
    assert 1 <= len(run.records) < len(models)
    assert run.truncated_lines == ()
    assert "--resume int" in output
    time.sleep(0.5)
    for pid in _worker_pids(run_dir):  # the running cell's worker was stopped too
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    resumed = _sweep_process(tmp_path, preset, "--resume", "int")
    assert resumed.wait(timeout=180) == 0
    run = load_run(run_dir)
    assert run.manifest.state == "complete"
    assert sorted(r.model for r in run.history) == sorted(models)  # each cell exactly once


def test_kill_9_at_random_moments_then_resume_keeps_each_cell_once(tmp_path: Path) -> None:
    models = ["mlp:seed", "transformer:tiny", "cnn:tiny", "rnn:lstm-tiny", "mlp:small"]
    preset = write_preset(tmp_path, models)
    rng = random.Random(7)
    run_dir = tmp_path / "results" / "kill"
    args = ("--run-id", "kill")
    for _ in range(2):
        process = _sweep_process(tmp_path, preset, *args)
        time.sleep(rng.uniform(1.0, 5.0))
        process.kill()
        process.wait(timeout=30)
        if (run_dir / MANIFEST_NAME).exists():
            args = ("--resume", "kill")
    final = _sweep_process(tmp_path, preset, *args)
    assert final.wait(timeout=240) == 0, final.stdout.read().decode()
    run = load_run(run_dir)
    assert sorted(r.model for r in run.records) == sorted(models)
    assert sorted(r.model for r in run.history) == sorted(models)


def test_disk_full_mid_run_stops_cleanly_with_earlier_records_intact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import bigtrain.results.store as store

    real_os = store.os
    writes = {"cells": 0}

    class DiskFillsAfterOneRecord:
        """The OS boundary: the second record's write() fails with ENOSPC."""

        def __getattr__(self, name: str):  # noqa: ANN204
            return getattr(real_os, name)

        def write(self, fd: int, data: bytes) -> int:
            if data.startswith(b'{"schema_version"'):
                writes["cells"] += 1
                if writes["cells"] >= 2:
                    raise OSError(errno.ENOSPC, "No space left on device")
            return real_os.write(fd, data)

    monkeypatch.setattr(store, "os", DiskFillsAfterOneRecord())
    preset = write_preset(tmp_path, ["mlp:seed", "transformer:tiny", "rnn:lstm-tiny"])
    outcome = run_sweep(spec_from_preset(str(preset)), SweepOptions(out_dir=tmp_path, run_id="full"))
    monkeypatch.setattr(store, "os", real_os)
    assert outcome.error and "disk full" in outcome.error
    assert outcome.exit_code == 1
    run = load_run(tmp_path / "full")
    assert [r.model for r in run.records] == ["mlp:seed"]
    assert run.truncated_lines == ()
    assert run.manifest.state == "interrupted"
