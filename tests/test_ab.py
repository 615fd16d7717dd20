"""`bigbench ab` on real tiny runs: plumbing only (folders, rounds, order, sides, interpreters,
interrupts, bad flags). No assertion here depends on how fast anything ran: A/A verdicts may go
either way on a busy box, so exit codes are checked to be a verdict (0 pass, 1 regressed, 3
undecided), never which."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bigtrain.ab.plan import round_order
from bigtrain.results.store import load_run
from conftest import REPO, TESTS_DIR, run_cli

#: A verdict, whichever the noise gave: passed, regressed, or undecided (`--undecided fail`).
VERDICTS = (0, 1, 3)
TINY = ["--model", "mlp:seed", "--optimizer", "sgd", "--warmup", "0.02", "--duration", "0.05",
        "--min-steps", "3"]


@pytest.fixture(autouse=True)
def _workers_import_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    # Side workers are `python -m bigtrain` subprocesses: they must find this checkout's bigtrain.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO), str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]))


def _ab(tmp_path: Path, *args: str):
    return run_cli("ab", *TINY, "--out", str(tmp_path / "results"), *args, cwd=tmp_path)


def _wrapper(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """An interpreter that is a shell script: logs its pid (kept by exec), its side and the
    AB_MARK it was given, then execs this Python."""
    log = tmp_path / f"{name}.pids"
    script = tmp_path / f"python-{name}"
    script.write_text(f'#!/bin/sh\necho "$$ {name} ${{AB_MARK-unset}}" >> "{log}"\n'
                      f'exec "{sys.executable}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def _logged(log: Path) -> dict[int, str]:
    return {int(pid): mark for pid, _side, mark in
            (line.split() for line in log.read_text().splitlines())}


def test_aa_run_writes_two_normal_run_folders_in_the_recorded_seeded_order(tmp_path: Path) -> None:
    result = _ab(tmp_path, "--model", "mlp:seed,mlp:small", "--rounds", "3", "--order-seed", "7",
                 "--run-id", "aa", "--json", str(tmp_path / "ab.json"),
                 "--markdown", str(tmp_path / "ab.md"))
    assert result.exit_code in VERDICTS, result.output  # a verdict, whichever the noise gave
    facts = json.loads((tmp_path / "ab.json").read_text())["ab"]
    assert facts["order_seed"] == 7 and facts["mode"] == "interleave"
    # --rounds honoured: nothing is decided before the third round, and 3 is the limit.
    assert facts["rounds_used"] == 3 and facts["stop_reason"] in ("rounds", "decided")
    assert "bigbench ab" in (tmp_path / "ab.md").read_text()
    assert "3 round(s) of at most 3" in result.output
    assert "smallest detectable change: step_time" in result.output

    runs = {side: load_run(tmp_path / "results" / f"aa-{side}")
            for side in ("baseline", "candidate")}
    cell_ids = sorted({r.cell_id for r in runs["baseline"].records})
    assert len(cell_ids) == 2
    for side, run in runs.items():
        manifest = run.manifest
        assert manifest.state == "complete" and manifest.executor == "ab-interleave"
        assert manifest.environment["ab"]["python"] == sys.executable
        assert manifest.environment["ab"]["side"] == side
        assert manifest.environment["ab"]["order_seed"] == 7
        assert manifest.environment["torch_num_threads"] == 1
        assert manifest.spec["measure"]["repeats"] == facts["rounds_used"]
        assert {r.repeat for r in run.records} == set(range(facts["rounds_used"]))
        assert all(r.status == "ok" and r.run_id == f"aa-{side}" for r in run.records)
        assert {r.extra["ab_core"] for r in run.records} == {sorted(os.sched_getaffinity(0))[-1]}
    # Every record sits where the recorded seed's order put it.
    for index in range(facts["rounds_used"]):
        expected = {(s.cell_id, s.side): s.position
                    for s in round_order(cell_ids, index, 7, "interleave")}
        for side, run in runs.items():
            for record in (r for r in run.records if r.repeat == index):
                assert record.extra["ab_round"] == index
                assert record.extra["ab_position"] == expected[(record.cell_id, side)]

    # compare, report and export read the folders as any others.
    base, cand = (str(tmp_path / "results" / f"aa-{s}") for s in ("baseline", "candidate"))
    # a verdict, never bad input: 3 where the real A/A repeats are too noisy to call unchanged
    assert run_cli("compare", base, cand).exit_code in (0, 1, 3)
    report = run_cli("report", base, cand, "-o", str(tmp_path / "report"))
    assert report.exit_code == 0, report.output
    assert (tmp_path / "report" / "index.html").is_file()
    exported = run_cli("export", cand, "--format", "csv", "-o", str(tmp_path / "c.csv"))
    assert exported.exit_code == 0, exported.output


def test_each_side_runs_in_its_own_interpreter_with_only_its_own_env(tmp_path: Path) -> None:
    base_py, base_log = _wrapper(tmp_path, "baseline")
    cand_py, cand_log = _wrapper(tmp_path, "candidate")
    result = _ab(tmp_path, "--budget-s", "0.001", "--run-id", "w", "--baseline-python", str(base_py),
                 "--candidate-python", str(cand_py), "--candidate-env", "AB_MARK=cand")
    assert result.exit_code in VERDICTS, result.output
    base_pids, cand_pids = _logged(base_log), _logged(cand_log)
    runs = {side: load_run(tmp_path / "results" / f"w-{side}")
            for side in ("baseline", "candidate")}
    cand_records = runs["candidate"].records
    base_records = runs["baseline"].records
    assert cand_records and base_records
    # The records came from processes the side's own interpreter started, with its env only.
    assert all(cand_pids.get(r.worker_pid) == "cand" for r in cand_records)
    assert all(base_pids.get(r.worker_pid) == "unset" for r in base_records)
    assert not set(base_pids) & set(cand_pids)
    assert runs["candidate"].manifest.environment["ab"]["python"] == str(cand_py)
    assert runs["candidate"].manifest.environment["ab"]["env"] == {"AB_MARK": "cand"}
    assert runs["baseline"].manifest.environment["ab"]["env"] == {}


def test_budget_stops_before_a_round_that_would_overrun_it(tmp_path: Path) -> None:
    # Any real round takes more than a millisecond: one round runs (the first always does), and
    # the second would overrun.
    result = _ab(tmp_path, "--rounds", "5", "--budget-s", "0.001", "--run-id", "b",
                 "--json", str(tmp_path / "ab.json"))
    assert result.exit_code in VERDICTS, result.output
    facts = json.loads((tmp_path / "ab.json").read_text())["ab"]
    assert facts["rounds_used"] == 1 and facts["stop_reason"] == "budget"
    assert "the next round would overrun the budget" in result.output
    assert {r.repeat for r in load_run(tmp_path / "results" / "b-candidate").records} == {0}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="duet needs 2 cores")
def test_duet_runs_the_sides_on_two_cores_swapped_every_round(tmp_path: Path) -> None:
    result = _ab(tmp_path, "--mode", "duet", "--rounds", "3",
                 "--run-id", "d", "--json", str(tmp_path / "ab.json"))
    assert result.exit_code in VERDICTS, result.output
    rounds_used = json.loads((tmp_path / "ab.json").read_text())["ab"]["rounds_used"]
    cores = {}
    for side in ("baseline", "candidate"):
        run = load_run(tmp_path / "results" / f"d-{side}")
        assert run.manifest.executor == "ab-duet"
        cores[side] = {r.repeat: r.extra["ab_core"] for r in run.records}
    a, b = sorted(os.sched_getaffinity(0))[-2:]
    assert cores["baseline"][0] == a and cores["candidate"][0] == b
    assert rounds_used == 3
    assert cores["baseline"] == {0: a, 1: b, 2: a} and cores["candidate"] == {0: b, 1: a, 2: b}


def test_duet_is_refused_on_one_core_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bigtrain.ab.driver.usable_cores", lambda: [0])  # the machine's answer
    result = _ab(tmp_path, "--mode", "duet", "--run-id", "one")
    assert result.exit_code == 2
    assert "needs at least 2 usable cores" in result.output and "--mode interleave" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("args, message", [
    (["--mode", "zigzag"], "'zigzag' is not one of 'interleave', 'duet'"),
    (["--rounds", "2"], "--rounds 2: paired rounds decide nothing before 3 rounds"),
    (["--budget-s", "0"], "--budget-s"),
    (["--alpha", "1.5"], "--alpha"),
    (["--baseline-env", "NOVALUE"], "--baseline-env: 'NOVALUE' is not NAME=VALUE"),
    (["--candidate-python", "/nonexistent/python"],
     "--candidate-python: '/nonexistent/python' is not an executable file"),
    (["--threshold", "fast"], "(metrics: step_time"),
    (["--optimizer", "adamx"], "adamx"),
    (["--run-id", "../escape"], "--run-id"),
])
def test_bad_flags_exit_2_naming_the_flag_and_choices(tmp_path: Path, args: list[str],
                                                      message: str) -> None:
    result = _ab(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "results").exists()


def test_an_interpreter_without_bigtrain_is_refused_naming_its_flag(tmp_path: Path) -> None:
    not_python = tmp_path / "not-python"
    not_python.write_text("#!/bin/sh\necho 'no such module: bigtrain' >&2\nexit 1\n")
    not_python.chmod(0o755)
    result = _ab(tmp_path, "--baseline-python", str(not_python), "--run-id", "np")
    assert result.exit_code == 2, result.output
    assert "--baseline-python" in result.output and "no such module: bigtrain" in result.output
    assert not (tmp_path / "results").exists()


def test_a_crashing_cell_is_recorded_and_the_next_cell_gets_a_fresh_worker(
        tmp_path: Path, faults: None) -> None:
    from bigtrain.cells.matrix import DeviceInventory, expand
    from bigtrain.cells.spec import spec_from_preset

    # An order seed whose first round runs the crashing cell first on both sides, so a cell
    # follows the crash on each side.
    spec = spec_from_preset("ci", {"model": "fault:segv,mlp:seed", "optimizer": "sgd"})
    cells = {c.model: c.cell_id for c in expand(spec, DeviceInventory.detect())}
    crash_id, cell_ids = cells["fault:segv"], sorted(cells.values())
    seed = next(s for s in range(1000)
                if [x.cell_id for x in round_order(cell_ids, 0, s, "interleave")[:2]]
                == [crash_id, crash_id])
    result = _ab(tmp_path, "--model", "fault:segv,mlp:seed", "--budget-s", "0.001",
                 "--order-seed", str(seed), "--run-id", "f")
    # Crashed on both sides is "not ok in either run", as compare has it: no verdict asserted.
    assert result.exit_code in VERDICTS, result.output
    for side in ("baseline", "candidate"):
        records = {r.model: r for r in load_run(tmp_path / "results" / f"f-{side}").records}
        assert records["fault:segv"].status == "crashed"
        assert records["mlp:seed"].status == "ok"
        assert records["mlp:seed"].extra["ab_position"] > records["fault:segv"].extra["ab_position"]
        assert records["mlp:seed"].worker_pid != records["fault:segv"].worker_pid


def test_ctrl_c_leaves_both_folders_valid_and_does_not_pass_the_gate(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "bigtrain", "ab", *TINY, "--rounds", "30", "--budget-s", "3600",
         "--out", str(tmp_path / "results"), "--run-id", "int"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    cells = tmp_path / "results" / "int-candidate" / "cells.jsonl"
    deadline = time.monotonic() + 300
    while not (cells.is_file() and cells.read_text().strip()):  # a record written: mid-run now
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline, "no record within 300 s"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output.decode()
    for side in ("baseline", "candidate"):
        run = load_run(tmp_path / "results" / f"int-{side}")
        assert run.manifest.state == "interrupted"
        assert not run.truncated_lines


def _fake_side(tmp_path: Path, name: str) -> Path:
    """An interpreter that is the fake worker (tests/fake_ab_worker.py): exact synthetic records."""
    script = tmp_path / f"fake-{name}"
    script.write_text(f'#!/bin/sh\nshift 3\nexec "{sys.executable}" '
                      f'"{TESTS_DIR / "fake_ab_worker.py"}" "$@"\n')  # drops `-m bigtrain ab-worker`
    script.chmod(0o755)
    return script


def test_the_run_stops_as_soon_as_every_cell_is_decided(tmp_path: Path) -> None:
    # Known synthetic values at the process boundary: the candidate twice as slow, jitter 0.2%.
    result = _ab(tmp_path, "--model", "mlp:seed,mlp:small", "--rounds", "10", "--run-id", "dec",
                 "--baseline-python", str(_fake_side(tmp_path, "b")),
                 "--candidate-python", str(_fake_side(tmp_path, "c")),
                 "--baseline-env", "FAKE_AB_SIDE=b", "--candidate-env", "FAKE_AB_SIDE=c",
                 "--candidate-env", "FAKE_AB_STEP_S=0.002", "--json", str(tmp_path / "ab.json"))
    assert result.exit_code == 1, result.output  # regressed: the gate fails
    data = json.loads((tmp_path / "ab.json").read_text())
    assert data["ab"]["stop_reason"] == "decided" and data["ab"]["rounds_used"] == 3
    assert {c["verdict"] for c in data["cells"]} == {"regressed"}
    assert "every cell decided" in result.output


@pytest.mark.parametrize(("policy", "code"), [(None, 3), ("fail", 3), ("pass", 0)])
def test_with_nothing_decided_the_round_limit_stops_it_and_undecided_follows_the_policy(
        tmp_path: Path, policy: str | None, code: int) -> None:
    # Equal sides, but a 0.01% threshold no interval can get inside: never decided.
    flags = ["--undecided", policy] if policy else []
    result = _ab(tmp_path, "--rounds", "4", "--run-id", "und", "--threshold", "0.01%",
                 "--baseline-python", str(_fake_side(tmp_path, "b")),
                 "--candidate-python", str(_fake_side(tmp_path, "c")),
                 "--baseline-env", "FAKE_AB_SIDE=b", "--candidate-env", "FAKE_AB_SIDE=c",
                 "--json", str(tmp_path / "ab.json"), *flags)
    assert result.exit_code == code, result.output
    data = json.loads((tmp_path / "ab.json").read_text())
    assert data["ab"]["stop_reason"] == "rounds" and data["ab"]["rounds_used"] == 4
    assert data["ab"]["exit_code"] == code
    assert {c["verdict"] for c in data["cells"]} == {"undecided"}
    assert "smallest detectable change: step_time" in result.output
    assert ("gate FAILED (exit 3)" in result.output) == (code == 3)
    assert ("passed only because --undecided pass" in result.output) == (code == 0)


def test_ab_profile_profiles_each_cell_once_per_side_outside_the_comparison(
        tmp_path: Path) -> None:
    """Issue 24: `ab --profile` leaves a profile of every cell in both side folders, from one
    more pass of fresh workers after the last round, whose records stay out of the rounds."""
    from bigtrain.profiles.load import load_profiles

    result = _ab(tmp_path, "--rounds", "3", "--run-id", "prof", "--profile", "--profile-steps", "2")
    assert result.exit_code in VERDICTS, result.output
    for side in ("baseline", "candidate"):
        run_dir = tmp_path / "results" / f"prof-{side}"
        run = load_run(run_dir)
        assert {r.repeat for r in run.records} == {0, 1, 2}  # the profile pass adds no record
        found = load_profiles(run_dir)
        assert set(found.profiles) == {r.cell_id for r in run.records} and not found.invalid
    bad = _ab(tmp_path, "--profile-shapes", "--rounds", "3")
    assert bad.exit_code == 2 and "need --profile" in bad.output
