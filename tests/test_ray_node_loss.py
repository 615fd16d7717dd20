"""A lost Ray node, at the node-state boundary (Ray faked; no cluster, no clock): the running
cell is recorded as lost with its node, a cell whose actor died before it started runs again on
a node that is alive, and no cell goes to a node Ray has not yet settled or declared dead."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("ray")

from bigtrain.cells.matrix import Cell  # noqa: E402
from bigtrain.measure.protocols import StepTimeSettings  # noqa: E402
from bigtrain.run import ray_executor  # noqa: E402
from bigtrain.run import worker_protocol as protocol  # noqa: E402
from bigtrain.run.job import CellJob  # noqa: E402
from bigtrain.run.executor import ExecutorSettings  # noqa: E402
from hostile_workers import ok_record  # noqa: E402

NODE_A, NODE_B = "a1" * 28, "b2" * 28
PROCESS_DIED = ("The actor died unexpectedly before finishing this task.\n"
                "Worker unexpectedly exits with a connection error code 2. End of file.")
NODE_DIED = ("The actor died unexpectedly before finishing this task.\n"
             "The actor is dead because its node has died. Node Id: " + NODE_A)


class ActorDied(Exception):
    actor_init_failed = False


class FakeRay:
    """The few calls of Ray the executor makes, scripted: node states, and what each actor
    call answers (a value, or an exception to raise)."""

    exceptions = SimpleNamespace(RayActorError=ActorDied, RayError=Exception)

    def __init__(self) -> None:
        self.alive = {NODE_A: True, NODE_B: True}
        #: After this many more looks at the nodes, node A is declared dead (None: never).
        self.a_dies_after_looks: int | None = None
        self.answers: dict[int, Any] = {}
        self.killed: list[Any] = []

    def nodes(self) -> list[dict[str, Any]]:
        if self.a_dies_after_looks is not None:
            if self.a_dies_after_looks <= 0:
                self.alive[NODE_A] = False
            self.a_dies_after_looks -= 1
        return [{"NodeID": node, "Alive": alive, "NodeManagerAddress": f"10.0.0.{i}",
                 "NodeManagerHostname": f"host-{node[0]}", "Resources": {"CPU": 2.0}}
                for i, (node, alive) in enumerate(self.alive.items())]

    def get(self, ref: Any) -> Any:
        answer = self.answers[id(ref)]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def kill(self, actor: Any, no_restart: bool = True) -> None:
        self.killed.append(actor)


class FakeRunner:
    """`ray.remote(CellRunner)`: actors whose calls return refs (plain objects)."""

    def __init__(self) -> None:
        self.placed: list[str | None] = []

    def options(self, **options: Any) -> FakeRunner:
        strategy = options.get("scheduling_strategy")
        self.placed.append(getattr(strategy, "node_id", None))
        return self

    def remote(self) -> Any:
        return SimpleNamespace(where=SimpleNamespace(remote=lambda: object()),
                               run=SimpleNamespace(remote=lambda job: object()))


def _executor() -> tuple[ray_executor.RayExecutor, FakeRay, FakeRunner]:
    executor = ray_executor.RayExecutor(ExecutorSettings(slots=("cpu",), cell_timeout_s=60))
    fake, runner = FakeRay(), FakeRunner()
    executor._ray, executor._runner = fake, runner
    executor._sleep = lambda _s: None
    return executor, fake, runner


def _job(repeat: int = 0) -> CellJob:
    cell = Cell(cell_id="cafe01", model="mlp:seed", optimizer="sgd", impl="default",
                batch_norm="off", precision="fp32", device="cpu", batch_size=8, compile="off")
    return CellJob(run_id="r", cell=cell, repeat=repeat, device="cpu",
                   settings=StepTimeSettings(warmup_s=0.0, duration_s=0.01, min_steps=1))


def _only_running(executor):
    (ref, cell), = executor._running.items()
    return ref, cell


def _started_on_a(executor, fake, runner, records, *, running: bool):
    executor._dispatch([_job()], None, records.append)
    ref, cell = _only_running(executor)
    assert runner.placed[-1] == NODE_A
    if running:  # the actor answered `ready`: the cell itself is running
        fake.answers[id(ref)] = protocol.ready_message(4242, node_id=NODE_A, host="host-a")
        executor._answer(executor._running.pop(ref), ref, records.append)
        ref, cell = _only_running(executor)
    return ref, cell


def test_a_node_lost_mid_cell_is_named_and_gets_no_new_cell():
    executor, fake, runner = _executor()
    records: list = []
    ref, cell = _started_on_a(executor, fake, runner, records, running=True)
    fake.answers[id(ref)] = ActorDied(NODE_DIED)  # Ray says the node died; its state lags
    executor._answer(executor._running.pop(ref), ref, records.append)
    (record,) = records
    assert record.status == "crashed"
    assert "was lost mid-cell" in record.reason and NODE_A[:12] in record.reason
    assert fake.alive[NODE_A]  # Ray still lists it alive ...
    executor._dispatch([_job(1)], None, records.append)
    assert runner.placed[-1] == NODE_B  # ... yet the next cell goes elsewhere


def test_a_process_death_waits_for_rays_verdict_on_the_node():
    executor, fake, runner = _executor()
    records: list = []
    ref, _ = _started_on_a(executor, fake, runner, records, running=True)
    fake.a_dies_after_looks = 3  # Ray declares the node dead a few looks later
    fake.answers[id(ref)] = ActorDied(PROCESS_DIED)
    executor._answer(executor._running.pop(ref), ref, records.append)
    assert "node" in records[0].reason and "was lost mid-cell" in records[0].reason


def test_a_process_death_on_a_node_that_stays_up_is_named_so_and_the_node_is_used_again():
    executor, fake, runner = _executor()
    clock = iter(range(0, 10_000, 5))
    executor._clock = lambda: float(next(clock))
    records: list = []
    ref, _ = _started_on_a(executor, fake, runner, records, running=True)
    fake.answers[id(ref)] = ActorDied(PROCESS_DIED)
    executor._answer(executor._running.pop(ref), ref, records.append)
    assert "the worker process on node" in records[0].reason
    executor._dispatch([_job(1)], None, records.append)
    assert runner.placed[-1] == NODE_A


def test_a_cell_whose_actor_died_before_it_started_runs_again_on_an_alive_node():
    executor, fake, runner = _executor()
    records: list = []
    ref, _ = _started_on_a(executor, fake, runner, records, running=False)
    fake.answers[id(ref)] = ActorDied(NODE_DIED)
    executor._answer(executor._running.pop(ref), ref, records.append)
    assert records == []  # never started: no record, no result lost
    assert [job.repeat for job in executor._restart] == [0]
    executor._dispatch(executor._restart, None, records.append)
    assert runner.placed[-1] == NODE_B


def test_an_actor_answer_that_breaks_the_protocol_is_the_cells_error():
    executor, fake, runner = _executor()
    records: list = []
    ref, cell = _started_on_a(executor, fake, runner, records, running=True)
    fake.answers[id(ref)] = {"record": {"cell_id": 1}, "health": {}}
    executor._answer(executor._running.pop(ref), ref, records.append)
    assert records[0].status == "error" and "broke the worker protocol" in records[0].reason
    ref2 = object()
    fake.answers[id(ref2)] = protocol.record_message(ok_record(cell.job))
    executor._running[ref2] = cell
    executor._answer(executor._running.pop(ref2), ref2, records.append)
    assert records[1].status == "ok"


def test_native_log_lines_go_to_their_file_and_ours_still_reach_stderr(tmp_path):
    """Ray's C++ core writes to descriptor 2; bigbench's messages go through sys.stderr."""
    import subprocess
    import sys

    from conftest import REPO

    log = tmp_path / "native.log"
    script = ("import os, sys\n"
              "from bigtrain.run.native_log import NativeStderr\n"
              f"n = NativeStderr({str(log)!r}); n.start()\n"
              "os.write(2, b'[state-dump] native line\\n')\n"
              "print('our line', file=sys.stderr)\n"
              "n.stop()\n"
              "os.write(2, b'after stop\\n')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO)}, check=True)
    assert "our line" in done.stderr and "after stop" in done.stderr
    assert "[state-dump]" not in done.stderr
    assert log.read_text() == "[state-dump] native line\n"
