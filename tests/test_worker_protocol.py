"""The one worker protocol (`bigtrain.run.worker_protocol`): every message a worker sends is
validated, and one that breaks the protocol costs its cell only (an `error` record showing what
arrived), never the sweep, on every channel: the local pool's pipe, the A/B worker's stream and a
Ray actor's answer."""

from __future__ import annotations

import os

import pytest

from bigtrain.cells.matrix import Cell
from bigtrain.measure.protocols import StepTimeSettings
from bigtrain.run import worker_protocol as protocol
from bigtrain.run.records import json_clean
from bigtrain.run.job import CellJob
from bigtrain.run.local_pool import LocalPoolExecutor
from conftest import REPO, TESTS_DIR
from hostile_workers import BAD_BYTES, MODE_ENV, ok_record, protocol_breaker

CELL = Cell(cell_id="c0ffee", model="mlp:seed", optimizer="sgd", impl="default",
            batch_norm="off", precision="fp32", device="cpu", batch_size=8, compile="off")


def job(repeat: int = 0) -> CellJob:
    return CellJob(run_id="r1", cell=CELL, repeat=repeat, device="cpu",
                   settings=StepTimeSettings(warmup_s=0.0, duration_s=0.01, min_steps=1))


# -- decode: pure ----------------------------------------------------------------------------
@pytest.mark.parametrize("raw, problem", [
    (b"\x80\x04garbage", "not UTF-8"),
    (b"not json", "not JSON"),
    (b"42", "must be a JSON object, not a int"),
    (b'{"hello": 1}', "no known kind"),
    (b'{"record": {}, "health": {}}', "kinds record, health"),
    (b'{"health": {"healthy": true, "reason": null}}', "where the driver expects 'record'"),
    (b'{"record": "text"}', "must hold a record object"),
    (b'{"record": {"cell_id": 7}}', "an invalid record"),
    (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    ({"record": {"x": {1, 2}}}, "a set, which JSON cannot hold"),
    (b" " * (protocol.MAX_MESSAGE_BYTES + 1), "over the 16777216-byte limit"),
])
def test_a_message_that_breaks_the_protocol_says_how_and_shows_what_arrived(raw, problem):
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode(raw, expect=(protocol.RECORD,))
    assert problem in caught.value.problem
    assert caught.value.arrived and len(caught.value.arrived) < protocol.SHOWN_CHARS + 40


def test_every_message_kind_round_trips():
    record = ok_record(job())
    for message, kind in [(protocol.ready_message(123, host="h"), protocol.READY),
                          (protocol.record_message(record), protocol.RECORD),
                          (protocol.health_message(False, "sticky CUDA error"), protocol.HEALTH),
                          (protocol.error_message("no such axis"), protocol.ERROR)]:
        decoded = protocol.decode(protocol.encode(message), expect=(kind,))
        assert decoded.kind == kind
    assert protocol.decode(protocol.encode(protocol.record_message(record)),
                           expect=(protocol.RECORD,)).record == record
    assert not protocol.decode(protocol.encode(protocol.health_message(False, "x")),
                               expect=(protocol.HEALTH,)).healthy
    with pytest.raises(protocol.ProtocolError, match="protocol 2, not 1"):
        protocol.decode(b'{"ready": 2, "pid": 5}', expect=(protocol.READY,))


def test_a_record_whose_extra_is_not_json_becomes_an_error_naming_the_key():
    record = ok_record(job())
    import dataclasses

    bad = dataclasses.replace(record, extra={"weights": {1, 2}, "fine": 1})
    cleaned = json_clean(job(), bad, record.started_at)
    assert cleaned.status == "error"
    assert "extra.weights" in cleaned.reason and "set" in cleaned.reason
    assert json_clean(job(), record, record.started_at) is record


# -- the local pool's pipe: a real worker process that breaks the protocol --------------------
@pytest.mark.parametrize("mode", sorted(BAD_BYTES))
def test_a_worker_breaking_the_protocol_costs_one_cell_and_is_replaced(
        mode: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(MODE_ENV, mode)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), str(REPO)]))
    pool = LocalPoolExecutor(["cpu"], cell_timeout_s=120, log_dir=tmp_path,
                             worker_target=protocol_breaker)
    records = []
    try:
        pool.run([job(0), job(1)], records.append)
    finally:
        pool.shutdown()
    assert [r.repeat for r in records] == [0, 1]
    bad, good = records
    assert bad.status == "error"
    assert "broke the worker protocol" in bad.reason
    assert "what arrived" in (bad.traceback_tail or "")
    assert good.status == "ok"  # the next cell ran, in a fresh worker
    assert pool.workers_started == 2


# -- the store's boundary: a record JSON cannot hold never ends the sweep ---------------------
class _UncleanExecutor:
    """Hands back a synthetic record per job; the first job's `extra` holds a set."""

    def __init__(self, settings) -> None:  # noqa: ANN001
        self.workers_started = 0

    def run(self, jobs, on_result, on_start=None) -> None:  # noqa: ANN001
        import dataclasses

        for index, one in enumerate(jobs):
            record = ok_record(one)
            if index == 0:
                record = dataclasses.replace(record, extra={"weights": {1, 2}})
            on_result(record)

    def retire_idle_workers(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def test_a_record_json_cannot_hold_is_stored_as_that_cells_error(tmp_path) -> None:
    from bigtrain.results.store import load_run
    from bigtrain.run.executor import register_executor
    from bigtrain.run.sweep import SweepOptions, run_sweep
    from bigtrain.cells.spec import spec_from_preset
    from conftest import write_preset

    register_executor("unclean-test", _UncleanExecutor, replace=True)
    preset = write_preset(tmp_path, ["mlp:seed"], ["sgd", "adam", "rmsprop"])
    outcome = run_sweep(spec_from_preset(str(preset)),
                        SweepOptions(out_dir=tmp_path, run_id="unclean", executor="unclean-test"))
    statuses = [r.status for r in load_run(tmp_path / "unclean").records]
    assert statuses == ["error", "ok", "ok"]
    assert "extra.weights" in outcome.records[0].reason


# -- the A/B worker's stream: a line over the cap is refused without reading it all -----------
def test_an_ab_worker_line_over_the_cap_is_a_protocol_error_not_a_memory_spike(tmp_path) -> None:
    import subprocess
    import sys

    from bigtrain.ab.side_worker import SideWorker

    worker = SideWorker.__new__(SideWorker)   # the process is the faked boundary
    writes = f"import sys; sys.stdout.buffer.write(b' ' * {protocol.MAX_MESSAGE_BYTES * 2})"
    worker._process = subprocess.Popen([sys.executable, "-c", writes], stdout=subprocess.PIPE)
    try:
        with pytest.raises(protocol.ProtocolError, match="over the 16777216-byte limit"):
            worker.read_message((protocol.RECORD,))
    finally:
        worker._process.kill()
        worker._process.wait()
        worker._process.stdout.close()
