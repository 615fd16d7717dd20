"""A busy machine is detected (issue 30): the host's load over each timed window in the record,
a live warning, compare's flag, and `--require-quiet`. Counters are faked at the boundary (the
snapshot reader, NVML, the clock); no assertion depends on the real load of this box."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bigtrain.compare import compare_runs, render_markdown, render_terminal
from bigtrain.compare.busy import busy_note
from bigtrain.measure import host_load as hl
from bigtrain.measure.telemetry.nvml import forget_nvml_state, other_compute_processes
from bigtrain.results.schema import CellRecord, SchemaError
from bigtrain.results.store import load_run
from conftest import run_cli
from fake_nvml import FakeGpu, FakeNvml, install
from test_compare_support import ok_record, steps, write_run


def _snap(wall_s: float, busy_cpu_s: float, own_cpu_s: float, *, steal_cpu_s: float | None = 0.0,
          idle_cpu_s: float = 0.0, loadavg: float | None = 1.0) -> hl.HostSnapshot:
    return hl.HostSnapshot(wall_s=wall_s, busy_cpu_s=busy_cpu_s,
                           total_cpu_s=busy_cpu_s + idle_cpu_s + (steal_cpu_s or 0.0),
                           steal_cpu_s=steal_cpu_s, own_cpu_s=own_cpu_s, loadavg_1m=loadavg)


START = _snap(100.0, 1000.0, 50.0)


@pytest.mark.parametrize(("other_cpu_s", "busy"), [(11.0, False), (11.2, True)])
def test_busy_means_others_used_more_than_the_spare_cores(other_cpu_s: float, busy: bool) -> None:
    # 2 cores, the cell uses 1 for a 10 s window: the spare is 1 core (+0.1 slack) = 11 CPU s.
    end = _snap(110.0, 1000.0 + 10.0 + other_cpu_s, 60.0, idle_cpu_s=5.0, loadavg=7.5)
    load = hl.host_load(START, end, cores=2, cores_used=1)
    assert load.other_cpu_s == pytest.approx(other_cpu_s)
    assert load.other_cpu_cores == pytest.approx(other_cpu_s / 10)
    assert load.busy is busy
    assert load.to_json()["busy"] is busy and load.to_json()["loadavg_1m"] == 7.5


def test_a_cell_on_every_core_is_busy_with_any_real_competitor_and_our_own_time_is_not_others():
    # the cell's own 20 CPU s never count as "others"
    quiet = hl.host_load(START, _snap(110.0, 1020.5, 70.0), cores=2, cores_used=2)
    assert quiet.other_cpu_s == pytest.approx(0.5) and not quiet.busy  # 0.05 cores: daemons
    loud = hl.host_load(START, _snap(110.0, 1022.0, 70.0), cores=2, cores_used=2)
    assert loud.busy  # 0.2 cores taken from a cell that needs both


def test_steal_counts_against_the_spare_cores():
    # 20 CPU s in the window, 4 of them stolen (20%) = 0.4 of 2 cores; others 0.8 cores: busy
    start = _snap(100.0, 1000.0, 50.0, steal_cpu_s=10.0)
    end = _snap(110.0, 1018.0, 60.0, steal_cpu_s=14.0, idle_cpu_s=-2.0)
    load = hl.host_load(start, end, cores=2, cores_used=1)
    assert load.steal_pct == pytest.approx(20.0)
    assert load.other_cpu_cores == pytest.approx(0.8)
    assert load.busy
    no_steal = hl.host_load(_snap(100, 1000, 50, steal_cpu_s=None),
                            _snap(110, 1018, 60, steal_cpu_s=None), cores=2, cores_used=1)
    assert no_steal.steal_pct is None and not no_steal.busy


def test_another_process_on_our_gpu_is_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, FakeNvml([FakeGpu(compute_pids=[4242, 77, 78])]))
    try:
        assert other_compute_processes("cuda:0", own_pid=4242) == 2
        assert other_compute_processes("cuda:0", own_pid=1) == 3
        load = hl.host_load(START, _snap(110.0, 1010.0, 60.0), cores=2, cores_used=1,
                            gpu_other_processes=2)
        assert load.other_cpu_cores == 0 and load.busy
    finally:
        forget_nvml_state()
    install(monkeypatch, None)  # no NVML: unknown, not zero
    try:
        assert other_compute_processes("cuda:0", own_pid=1) is None
    finally:
        forget_nvml_state()


def test_window_load_reads_at_both_ends_and_says_nothing_for_a_window_that_never_closed():
    counters = iter([START, _snap(110.0, 1025.0, 60.0)])
    window = hl.WindowLoad(cores_used=1, cores=2, reader=lambda: next(counters))
    assert window.result() is None
    window.open()
    assert window.result() is None
    window.close()
    load = window.result()
    assert load is not None and load.busy and load.other_cpu_cores == pytest.approx(1.5)
    assert load.gpu_other_processes is None  # a CPU cell


def test_the_record_field_is_validated():
    record = ok_record("r", "c0", 0, steps(0.01))
    good = {**record.to_json(), "host_load": hl.host_load(
        START, _snap(110.0, 1025.0, 60.0), cores=2, cores_used=1).to_json()}
    assert CellRecord.from_json(good).host_load["busy"] is True
    bad = {**good, "host_load": {**good["host_load"], "busy": "yes"}}
    with pytest.raises(SchemaError, match="host_load"):
        CellRecord.from_json(bad)


# -- --require-quiet ------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _load(other_cores: float) -> hl.HostLoad:
    return hl.host_load(START, _snap(110.0, 1000.0 + 10 * other_cores, 50.0), cores=2,
                        cores_used=1)


def test_require_quiet_waits_until_quiet_within_its_bound():
    clock, said = FakeClock(), []
    loads = iter([_load(1.9), _load(1.5), _load(0.3)])
    load = hl.require_quiet("wait", cores_used=1, max_wait_s=60, probe=lambda: next(loads),
                            sleep=clock.sleep, clock=clock, say=said.append, pause_s=10)
    assert not load.busy and clock.now == 20 and len(said) == 2
    assert "waiting for a quiet machine (10 of 60 s)" in said[1]


def test_require_quiet_refuses_at_once_or_at_the_bound_naming_the_load():
    clock = FakeClock()
    with pytest.raises(hl.MachineBusy, match=r"kept 1\.90 of 2 core\(s\) busy.*refuse"):
        hl.require_quiet("refuse", cores_used=1, max_wait_s=60, probe=lambda: _load(1.9),
                         sleep=clock.sleep, clock=clock)
    assert clock.now == 0
    with pytest.raises(hl.MachineBusy, match=r"still busy after waiting 30 s"):
        hl.require_quiet("wait", cores_used=1, max_wait_s=35, probe=lambda: _load(1.9),
                         sleep=clock.sleep, clock=clock, pause_s=10)
    assert clock.now == 30  # the next pause would have passed the bound


def _fake_host(monkeypatch: pytest.MonkeyPatch, other_cores: float) -> FakeClock:
    """The snapshot reader and the clock faked: others keep `other_cores` busy."""
    clock = FakeClock()
    monkeypatch.setattr(hl, "sleep", clock.sleep)
    monkeypatch.setattr(hl, "monotonic", clock)
    monkeypatch.setattr(hl, "host_cores", lambda: 2)

    def read() -> hl.HostSnapshot:
        return _snap(clock.now, 1000.0 + other_cores * clock.now, 0.0, loadavg=9.25)

    monkeypatch.setattr(hl, "read_snapshot", read)
    return clock


@pytest.mark.parametrize("flag", [["--require-quiet=refuse"],
                                  ["--require-quiet", "--quiet-wait-s", "20"]])
def test_sweep_and_ab_refuse_a_busy_machine_with_exit_2_and_run_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: list[str]) -> None:
    _fake_host(monkeypatch, other_cores=1.9)
    for command in ("sweep", "ab"):
        out = tmp_path / command
        result = run_cli(command, "--model", "mlp:seed", "--optimizer", "sgd", "--device", "cpu",
                         *flag, "--out", str(out), cwd=tmp_path)
        assert result.exit_code == 2, result.output
        assert "the machine is busy: other processes kept 1.90 of 2 core(s) busy" in result.output
        assert "load 9.25" in result.output
        assert not out.exists()  # nothing measured, nothing written


def test_a_quiet_machine_passes_the_check(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from bigtrain.commands.sweep import check_quiet

    _fake_host(monkeypatch, other_cores=0.2)
    check_quiet("refuse", 60, cores_used=1)
    assert "machine quiet: other processes kept 0.20 of 2 core(s)" in capsys.readouterr().err


# -- records, the live warning, compare ------------------------------------------------------------

def _busy(record: CellRecord, busy: bool) -> CellRecord:
    load = _load(1.9 if busy else 0.1).to_json()
    return dataclasses.replace(record, host_load=load)


def test_compare_flags_cells_measured_on_a_busy_machine(tmp_path: Path) -> None:
    base = write_run(tmp_path, "base", [_busy(ok_record("base", c, 0, steps(0.01)), False)
                                        for c in ("c0", "c1")])
    cand = write_run(tmp_path, "cand", [_busy(ok_record("cand", "c0", 0, steps(0.01)), True),
                                        _busy(ok_record("cand", "c1", 0, steps(0.01)), False)])
    comparison = compare_runs(load_run(base), load_run(cand))
    notes = [w for w in comparison.warnings if "measured on a busy machine" in w]
    assert len(notes) == 1
    assert notes[0].startswith(f"{cand}: 1 of 2 measurement(s) measured on a busy machine")
    assert "1.90 of 2 core(s)" in notes[0]
    markdown = render_markdown(comparison)
    assert "measured on a busy machine" in markdown
    assert markdown.startswith("## :warning:")  # no green tick over numbers from a busy box
    from io import StringIO

    from rich.console import Console

    buffer = StringIO()
    render_terminal(comparison, Console(file=buffer, width=200))
    assert "measured on a busy machine" in buffer.getvalue()
    assert busy_note(load_run(base).records, "base") is None
    # the CLI's JSON carries it too
    result = run_cli("compare", str(base), str(cand), "--json", str(tmp_path / "c.json"))
    assert any("busy machine" in w for w in json.loads((tmp_path / "c.json").read_text())
               ["warnings"]), result.output


def test_the_sweep_console_warns_live_for_a_busy_cell(capsys: pytest.CaptureFixture[str]) -> None:
    from bigtrain.run.console import LineProgress

    progress = LineProgress()
    progress._total = 1
    progress.cell_finished(_busy(ok_record("r", "c0", 0, steps(0.01)), True))
    err = capsys.readouterr().err
    assert "measured on a busy machine: other processes kept 1.90 of 2 core(s)" in err
    progress.cell_finished(_busy(ok_record("r", "c1", 0, steps(0.01)), False))
    assert "busy" not in capsys.readouterr().err


def test_a_real_cell_records_its_host_load(tmp_path: Path) -> None:
    # plumbing only: the field is there and valid; whether this box was busy is not asserted
    result = run_cli("sweep", "--model", "mlp:seed", "--optimizer", "sgd", "--precision", "fp32",
                     "--device", "cpu", "--warmup", "0.02", "--duration", "0.1",
                     "--run-id", "hl", "--no-report", "--out", str(tmp_path / "results"),
                     cwd=tmp_path)
    assert result.exit_code == 0, result.output
    (record,) = load_run(tmp_path / "results" / "hl").records
    load = record.host_load
    assert set(load) == {"loadavg_1m", "other_cpu_s", "other_cpu_cores", "steal_pct",
                         "gpu_other_processes", "cores", "cores_used", "busy"}
    assert load["cores"] >= load["cores_used"] >= 1 and isinstance(load["busy"], bool)


def test_ab_names_busy_rounds_in_its_comparison():
    from bigtrain.ab.gate import decide_rounds

    rounds = [{"baseline": {"c0": _busy(ok_record("b", "c0", r, steps(0.01, seed=r)), False)},
               "candidate": {"c0": _busy(ok_record("c", "c0", r, steps(0.01, seed=r)), r == 1)}}
              for r in range(3)]
    result, _ = decide_rounds(rounds, thresholds_pct=None, alpha=None, max_rounds=10)
    (note,) = result.warnings
    assert note.startswith("candidate: 1 of 3 measurement(s) measured on a busy machine")


def test_a_pinned_worker_still_counts_every_core_of_the_host(monkeypatch: pytest.MonkeyPatch):
    # an `ab` worker runs on one core, but others run on all of them, and /proc/stat sums all
    monkeypatch.setattr(hl.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(hl.os, "cpu_count", lambda: 2)
    counters = iter([START, _snap(110.0, 1027.0, 60.0)])
    window = hl.WindowLoad(cores_used=1, reader=lambda: next(counters))
    window.open()
    window.close()
    load = window.result()
    assert (load.cores, load.cores_used) == (2, 1)
    assert load.other_cpu_cores == pytest.approx(1.7) and load.busy
