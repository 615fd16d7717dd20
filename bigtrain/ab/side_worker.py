"""The driver's handle on one side's worker process, and running jobs on one or two of them.

A worker is `PY -m bigtrain ab-worker` started by the side's interpreter with the side's
environment (see `bigtrain.ab.worker`); it speaks `bigtrain.ab.protocol` on its standard streams.
Every job gets exactly one record, whatever happens: the worker's own, or one built by
`bigtrain.run.records` when it died, hung or answered nonsense, so a side's run folder reads the
same as a sweep's.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bigtrain.ab.protocol import PROTOCOL_VERSION, WORKER_COMMAND, job_message
from bigtrain.ab.sides import Side
from bigtrain.results.schema import CellRecord
from bigtrain.run import worker_protocol as protocol
from bigtrain.run.job import CellJob
from bigtrain.run.local_pool import WORKER_START_TIMEOUT_S, _tail
from bigtrain.run.process_tree import kill_tree
from bigtrain.run.records import death_record, executor_error_record, timeout_record
from bigtrain.run.worker import FRAMEWORK_ENV

#: One thread everywhere: torch's own pools and the BLAS and OpenMP libraries below it.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "OPENBLAS_NUM_THREADS": "1"}


def side_environment(side: Side, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a side's processes get: ours, one thread, then the side's own variables
    (which win, so a side may deliberately ask for more threads)."""
    return {**(os.environ if base is None else base), **SINGLE_THREAD_ENV, **side.env}


@dataclass(frozen=True, kw_only=True)
class ReadyInfo:
    """What a worker said about itself when it started."""

    pid: int
    cores: tuple[int, ...]
    python: str
    bigtrain_version: str
    torch_threads: int


class SideWorker:
    """One worker process of one side, pinned to one core."""

    def __init__(self, side: Side, *, core: int, log_path: Path, framework: str = "torch") -> None:
        self.side = side
        self.core = core
        self.log_path = log_path
        #: The framework whose cells this worker runs: one framework per process, as in the pool.
        self.framework = framework
        self.ready: ReadyInfo | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._handle: psutil.Process | None = None

    def start(self) -> None:
        """Start the process; it announces itself with a `ready` message (see `run_jobs`)."""
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [self.side.python, "-m", "bigtrain", WORKER_COMMAND,
                 "--protocol", str(PROTOCOL_VERSION), "--core", str(self.core)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                env={**side_environment(self.side), FRAMEWORK_ENV: self.framework}, start_new_session=True,
            )
        try:
            self._handle = psutil.Process(self._process.pid)
        except psutil.Error:
            self._handle = None  # it died at once: nothing to kill later

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def stdout(self) -> Any:
        assert self._process is not None and self._process.stdout is not None
        return self._process.stdout

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def send_job(self, job: CellJob) -> None:
        """Hand the worker one job (OSError when it is gone)."""
        assert self._process is not None and self._process.stdin is not None
        line = json.dumps(job_message(job), allow_nan=False) + "\n"
        self._process.stdin.write(line.encode("utf-8"))
        self._process.stdin.flush()

    def read_message(self, expect: Sequence[str]) -> protocol.Message | None:
        """The next message (blocks until a whole line), validated (`bigtrain.run.worker_protocol`):
        None at end of output; ProtocolError for a line that breaks the protocol."""
        line = self.stdout.readline(protocol.MAX_MESSAGE_BYTES + 1)
        if not line:
            return None
        if len(line) > protocol.MAX_MESSAGE_BYTES:  # read no further: the cap bounds memory
            raise protocol.oversized(len(line))
        return protocol.decode(line, expect=expect)

    def exit_code(self, wait_s: float = 5.0) -> int | None:
        """The exit code once the process ended (negative: the signal that killed it)."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return None

    def stderr_tail(self) -> str:
        return _tail(str(self.log_path))

    def stop(self) -> None:
        """Ask the worker to finish, and kill it if it does not within a few seconds."""
        if self._process is None:
            return
        try:
            assert self._process.stdin is not None
            send_line = json.dumps({"stop": True}) + "\n"
            self._process.stdin.write(send_line.encode("utf-8"))
            self._process.stdin.close()
        except (OSError, ValueError):
            pass
        if self.exit_code(wait_s=5.0) is None:
            self.kill()
        self._close_pipes()

    def kill(self) -> None:
        """Kill the worker with every process it started, and reap it."""
        if self._process is None:
            return
        if self._handle is not None:
            kill_tree(self._handle)
        try:
            self._process.kill()
        except ProcessLookupError:
            pass
        self.exit_code(wait_s=10.0)
        self._close_pipes()

    def _close_pipes(self) -> None:
        assert self._process is not None
        for pipe in (self._process.stdin, self._process.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


def _ready_info(message: protocol.Message) -> ReadyInfo | None:
    fields = message.fields
    try:
        return ReadyInfo(pid=int(fields["pid"]), cores=tuple(int(c) for c in fields["cores"]),
                         python=str(fields["python"]),
                         bigtrain_version=str(fields["bigtrain_version"]),
                         torch_threads=int(fields["torch_threads"]))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class _Running:
    worker: SideWorker
    job: CellJob
    deadline: float
    record: CellRecord | None = None


def run_jobs(assignments: Sequence[tuple[SideWorker, CellJob]], *,
             cell_timeout_s: float) -> list[CellRecord]:
    """Run one job on each given worker, all at once, and return their records in the given order.

    A worker not yet started is started here and gets its job once it is ready. A worker that
    fails a job in any way (its record not ok, death, time limit, a bad message) is killed, so
    the side's next job starts in a fresh process.
    """
    now = time.monotonic()
    running = []
    for worker, job in assignments:
        if worker.pid is None:
            worker.start()
        state = _Running(worker=worker, job=job,
                         deadline=now + (cell_timeout_s if worker.ready else WORKER_START_TIMEOUT_S))
        if worker.ready:
            _send_or_record(state, cell_timeout_s)
        running.append(state)
    while any(s.record is None for s in running):
        waiting = [s for s in running if s.record is None]
        timeout = max(0.0, min(s.deadline for s in waiting) - time.monotonic())
        readable, _, _ = select.select([s.worker.stdout for s in waiting], [], [], timeout)
        for state in waiting:
            if state.worker.stdout in readable:
                _receive(state, cell_timeout_s)
            elif time.monotonic() >= state.deadline:
                starting = state.worker.ready is None
                state.worker.kill()
                state.record = timeout_record(
                    state.job, what="start" if starting else "cell",
                    limit_s=WORKER_START_TIMEOUT_S if starting else cell_timeout_s,
                    stderr_tail=state.worker.stderr_tail(), worker_pid=state.worker.pid)
    for state in running:
        assert state.record is not None
        if state.record.failed and state.worker.alive:
            state.worker.kill()
    return [s.record for s in running if s.record is not None]


def _send_or_record(state: _Running, cell_timeout_s: float) -> None:
    try:
        state.worker.send_job(state.job)
        state.deadline = time.monotonic() + cell_timeout_s
    except (OSError, ValueError):
        _record_death(state)


def _record_death(state: _Running) -> None:
    worker = state.worker
    state.record = death_record(state.job, exit_code=worker.exit_code(),
                                stderr_tail=worker.stderr_tail(), worker_pid=worker.pid)
    worker.kill()


def _receive(state: _Running, cell_timeout_s: float) -> None:
    worker = state.worker
    expect = (protocol.READY,) if worker.ready is None else (protocol.RECORD, protocol.ERROR)
    try:
        message = worker.read_message(expect)
    except protocol.ProtocolError as exc:  # alive or not, it talks nonsense: the cell's error
        worker.kill()
        state.record = executor_error_record(
            state.job, reason=f"the ab worker broke the worker protocol: {exc.problem}",
            detail=f"what arrived: {exc.arrived}\n{worker.stderr_tail()}", worker_pid=worker.pid)
        return
    if message is None:
        _record_death(state)
    elif message.kind == protocol.READY:
        info = _ready_info(message)
        if info is None:
            worker.kill()
            state.record = executor_error_record(
                state.job, reason="the ab worker's ready message lacks cores, python, "
                                  "bigtrain_version or torch_threads",
                detail=protocol.shown(dict(message.fields)), worker_pid=worker.pid)
            return
        worker.ready = info
        _send_or_record(state, cell_timeout_s)
    elif message.kind == protocol.RECORD:
        assert message.record is not None
        state.record = message.record
    else:  # ERROR
        worker.kill()
        state.record = executor_error_record(
            state.job, reason=f"the ab worker refused the job: {message.fields['error']}",
            worker_pid=worker.pid)
