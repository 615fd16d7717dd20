"""The `local` executor: a pool of spawned worker processes, one per device slot on this machine.

Scheduling rules:
- one worker per device slot (`cpu`, or `cuda:N` for every visible GPU); GPU slots run in
  parallel; a CPU cell runs alone, since anything beside it would steal its cores (and a CPU
  cell beside GPU cells would steal the cores that feed them);
- a data-parallel cell (world_size N > 1) runs alone too: its N ranks hold the whole CPU, or
  cuda:0..N-1 (its worker takes slot cuda:0 and spawns the ranks, `bigtrain.run.distributed`);
- a job for `cuda` goes to any free GPU; a job for `cuda:N` waits for that GPU;
- a worker is reused for the next cell on its slot (unless `reuse_workers` is off). After a cell
  that failed in Python (error, oom, diverged) the worker checks its own health
  (`bigtrain.run.health`) and is kept only if healthy; a worker that died or timed out is gone;
- jobs run in the order given; the sweep interleaves repeats (A B C A B C) and asks for fresh
  workers between rounds with `retire_idle_workers`;
- a worker that must go (timeout, death, interrupt) is killed with its whole process tree
  (`bigtrain.run.process_tree`), helpers that left its session included;
- a worker runs the cells of one framework (the `framework` axis: torch, jax, tensorflow; two
  in one process fight over threads and device memory): a slot keeps one worker per framework
  and runs one cell at a time over them; on a GPU slot an idle worker of another framework is
  stopped before a new one starts, so two frameworks never hold one GPU's memory;
- worker stderr logs go to a temporary folder made when the first worker starts and removed by
  `shutdown` (unless the caller chose the folder): a record keeps the tail it needs, never a path.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

import psutil

from bigtrain.run import worker_protocol as protocol
from bigtrain.run.job import CellJob
from bigtrain.run.executor import (
    DEFAULT_EXECUTOR,
    ExecutorSettings,
    ResultCallback,
    StartCallback,
)
from bigtrain.run.process_tree import kill_tree
from bigtrain.run.records import death_record, executor_error_record, timeout_record
from bigtrain.run.worker import FRAMEWORK_ENV, worker_main

STDERR_TAIL_CHARS = 4000
#: A worker gets this long to start (import torch, initialize CUDA) before it counts as hung.
WORKER_START_TIMEOUT_S = 180.0
#: A worker gets this long to report its health after a failed cell before it is killed.
HEALTH_CHECK_TIMEOUT_S = 60.0


def local_pool_executor(settings: ExecutorSettings) -> LocalPoolExecutor:
    """The `local` executor's factory."""
    settings.refuse_options(DEFAULT_EXECUTOR)
    return LocalPoolExecutor(settings.slots, cell_timeout_s=settings.cell_timeout_s,
                             reuse_workers=settings.reuse_workers, log_dir=settings.log_dir,
                             worker_env=dict(settings.worker_env))


def _fits(job: CellJob, slot: str) -> bool:
    axis = job.cell.device
    if job.cell.world_size > 1 and axis.startswith("cuda"):
        return slot == "cuda:0"  # its ranks run on cuda:0..N-1
    return axis == slot or (axis == "cuda" and slot.startswith("cuda:"))


def _exclusive(job: CellJob) -> bool:
    """A job that must have the machine's devices to itself: a CPU cell (anything beside it
    steals its cores), or a data-parallel cell (its ranks hold the CPU, or N GPUs)."""
    return job.cell.device == "cpu" or job.cell.world_size > 1


def _framework(job: CellJob) -> str:
    return getattr(job.cell, "framework", "torch")


def _worker_key(slot: str, framework: str) -> str:
    """Where the pool files a worker: its slot for torch (as before frameworks), else slot and
    framework."""
    return slot if framework == "torch" else f"{slot}/{framework}"


@dataclass
class _Worker:
    slot: str
    process: multiprocessing.process.BaseProcess
    conn: Connection
    log_path: str
    #: Taken at start, so that a kill never hits a process that reused the pid after a reap.
    handle: psutil.Process | None = None
    ready: bool = False
    job: CellJob | None = None
    #: Reported a failed cell; its health report is pending, and it takes no job until then.
    checking_health: bool = False
    #: Its current job (or the health check after it) needs the machine alone (`_exclusive`).
    exclusive: bool = False
    deadline: float = 0.0
    started_at: float = field(default_factory=time.monotonic)
    #: The framework whose cells it runs (one per process).
    framework: str = "torch"

    @property
    def key(self) -> str:
        return _worker_key(self.slot, self.framework)

    @property
    def busy(self) -> bool:
        return self.job is not None or self.checking_health


class LocalPoolExecutor:
    """One spawned worker process per device slot on this machine."""

    def __init__(
        self,
        slots: Sequence[str],
        *,
        cell_timeout_s: float,
        reuse_workers: bool = True,
        log_dir: Path | None = None,
        worker_env: dict[str, str] | None = None,
        worker_target: Callable[[Connection, str, int], None] = worker_main,
    ) -> None:
        if not slots:
            raise ValueError("an executor needs at least one device slot")
        self.slots = list(slots)
        self.cell_timeout_s = cell_timeout_s
        self.reuse_workers = reuse_workers
        #: The caller's folder for worker logs (kept), or None: a temporary one, made when the
        #: first worker starts and removed by `shutdown`.
        self._given_log_dir = Path(log_dir) if log_dir else None
        self._temp_log_dir: Path | None = None
        self.worker_env = dict(worker_env or {})
        #: The worker's entry point (a test may give a worker that breaks the protocol).
        self.worker_target = worker_target
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[str, _Worker] = {}
        self.workers_started = 0

    @property
    def log_dir(self) -> Path:
        """Where worker stderr logs go (a temporary folder is made on first use)."""
        if self._given_log_dir is not None:
            return self._given_log_dir
        if self._temp_log_dir is None:
            self._temp_log_dir = Path(tempfile.mkdtemp(prefix="bigtrain-workers-"))
        return self._temp_log_dir

    # -- worker lifecycle ------------------------------------------------------------------
    def _start_worker(self, slot: str, framework: str = "torch") -> _Worker:
        if slot.startswith("cuda"):  # one framework's memory on a GPU at a time
            for other in [w for w in self._workers.values()
                          if w.slot == slot and w.framework != framework and not w.busy]:
                self._stop_gracefully(other)
        parent_conn, child_conn = self._context.Pipe()
        name = slot.replace(":", "") + ("" if framework == "torch" else f"-{framework}")
        log_path = str(self.log_dir / f"worker-{name}-{self.workers_started}.log")
        env = {**self.worker_env, FRAMEWORK_ENV: framework}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            process = self._context.Process(
                target=self.worker_target, args=(child_conn, log_path, os.getpid()),
                name=f"bigtrain-worker-{slot}",
            )
            # Not daemonic: torch.compile starts helper processes, which daemons may not have.
            process.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        child_conn.close()
        self.workers_started += 1
        worker = _Worker(slot=slot, process=process, conn=parent_conn, log_path=log_path,
                         handle=_handle(process.pid), framework=framework)
        worker.deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        self._workers[worker.key] = worker
        return worker

    def _kill(self, worker: _Worker) -> None:
        """Kill the worker's whole process tree (its group, and descendants that left it), then
        reap it."""
        if worker.handle is not None:
            kill_tree(worker.handle)
        try:
            worker.process.kill()
        except (ProcessLookupError, AttributeError):
            pass
        worker.process.join(timeout=10)
        worker.conn.close()
        self._workers.pop(worker.key, None)

    def _stop_gracefully(self, worker: _Worker) -> None:
        try:
            worker.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            self._kill(worker)
        else:
            worker.conn.close()
            self._workers.pop(worker.key, None)

    def retire_idle_workers(self) -> None:
        """Stop every idle worker so the next cells start in fresh processes."""
        for worker in list(self._workers.values()):
            if not worker.busy:
                self._stop_gracefully(worker)

    def shutdown(self) -> None:
        """Kill every worker now (interrupts) — nothing half-done survives — and remove the
        temporary log folder (every record already holds the log tail it needs)."""
        for worker in list(self._workers.values()):
            self._kill(worker)
        if self._temp_log_dir is not None:
            shutil.rmtree(self._temp_log_dir, ignore_errors=True)
            self._temp_log_dir = None

    # -- running ---------------------------------------------------------------------------
    def run(self, jobs: Sequence[CellJob], on_result: ResultCallback,
            on_start: StartCallback | None = None) -> None:
        """Run every job, calling `on_result` exactly once per job, in completion order."""
        pending = list(jobs)
        while pending or any(w.busy for w in self._workers.values()):
            self._dispatch(pending, on_start)
            self._collect(on_result)

    def _cpu_occupied(self) -> bool:
        """A worker holds the machine alone (a CPU or a data-parallel cell): nothing starts."""
        return any(w.busy and (w.slot == "cpu" or w.exclusive) for w in self._workers.values())

    def _dispatch(self, pending: list[CellJob], on_start: StartCallback | None) -> None:
        for slot in self.slots:
            if any(w.busy for w in self._workers.values() if w.slot == slot):
                continue
            if self._cpu_occupied():
                return
            index = next((i for i, job in enumerate(pending) if _fits(job, slot)), None)
            if index is None:
                continue
            job = pending[index]
            if _exclusive(job) and any(w.busy for w in self._workers.values()):
                continue  # a CPU or data-parallel cell waits until it has the machine to itself
            if any(_exclusive(j) for j in pending[:index]):
                continue  # keep the given order: an earlier CPU or data-parallel cell goes first
            pending.pop(index)
            framework = _framework(job)
            worker = (self._workers.get(_worker_key(slot, framework))
                      or self._start_worker(slot, framework))
            # `cuda` becomes the GPU that runs it; the limit lets a data-parallel cell stop its
            # ranks in time to name the one at fault.
            job = dataclasses.replace(job, device=slot, timeout_s=self.cell_timeout_s)
            worker.job = job
            worker.exclusive = _exclusive(job)
            if worker.ready:
                worker.deadline = time.monotonic() + self.cell_timeout_s
                worker.conn.send(job)
            if on_start is not None:
                on_start(job)

    def _collect(self, on_result: ResultCallback) -> None:
        busy = [w for w in self._workers.values() if w.busy]
        if not busy:
            return
        timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
        waitables = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = wait(waitables, timeout=timeout)
        now = time.monotonic()
        for worker in busy:
            if worker.conn in ready and self._receive(worker, now, on_result):
                continue
            if not worker.process.is_alive() or worker.process.sentinel in ready:
                worker.process.join(timeout=5)
                if worker.job is not None:  # a death during a health check costs no record
                    on_result(death_record(worker.job, exit_code=worker.process.exitcode,
                                           stderr_tail=_tail(worker.log_path),
                                           worker_pid=worker.process.pid))
                self._kill(worker)
            elif now >= worker.deadline:
                self._kill(worker)
                if worker.job is not None:
                    starting = not worker.ready
                    on_result(timeout_record(
                        worker.job, what="start" if starting else "cell",
                        limit_s=WORKER_START_TIMEOUT_S if starting else self.cell_timeout_s,
                        stderr_tail=_tail(worker.log_path), worker_pid=worker.process.pid,
                    ))

    def _receive(self, worker: _Worker, now: float, on_result: ResultCallback) -> bool:
        """Handle one message from `worker`; False when there was none (it died).

        Every message is checked against the worker protocol; one that breaks it (bytes that are
        not JSON, a kind the worker should not send now, a record that fails the schema) is the
        cell's `error` record, showing what arrived, and the worker is replaced."""
        try:
            raw: bytes | None = worker.conn.recv_bytes(protocol.MAX_MESSAGE_BYTES)
        except EOFError:
            return False
        except OSError as exc:
            # multiprocessing refuses a length over the cap before reading the body
            if str(exc) != "bad message length":
                return False
            raw = None
        if not worker.ready:
            expect: tuple[str, ...] = (protocol.READY,)
        elif worker.job is not None:
            expect = (protocol.RECORD,)
        else:
            expect = (protocol.HEALTH,)
        try:
            if raw is None:
                raise protocol.oversized(protocol.MAX_MESSAGE_BYTES + 1)
            message = protocol.decode(raw, expect=expect)
        except protocol.ProtocolError as exc:
            job, worker.job, worker.checking_health = worker.job, None, False
            self._kill(worker)
            if job is not None:  # a bad health report costs no record: its cell has one
                on_result(executor_error_record(
                    job, reason=f"the worker broke the worker protocol: {exc.problem}",
                    detail=f"what arrived: {exc.arrived}", worker_pid=worker.process.pid))
            return True
        if message.kind == protocol.READY:
            worker.ready = True
            worker.deadline = now + self.cell_timeout_s
            assert worker.job is not None
            worker.conn.send(worker.job)
        elif message.kind == protocol.RECORD:
            job, worker.job = worker.job, None
            record = message.record
            assert job is not None and record is not None
            if (record.cell_id, record.repeat) != (job.cell.cell_id, job.repeat):
                self._kill(worker)
                on_result(executor_error_record(
                    job, reason=f"the worker sent the record of another cell "
                                f"({record.cell_id!r} repeat {record.repeat})",
                    worker_pid=worker.process.pid))
                return True
            if not self.reuse_workers and record.failed:
                self._kill(worker)  # without reuse, its health report is not worth waiting for
            elif not self.reuse_workers:
                self._stop_gracefully(worker)
            elif record.failed:
                # The worker reports its health next; it takes no job until then.
                worker.checking_health = True
                worker.deadline = now + HEALTH_CHECK_TIMEOUT_S
            on_result(record)
        else:  # HEALTH
            worker.checking_health = False
            if not message.healthy:
                self._kill(worker)  # its next cell starts in a fresh process
        return True


def _handle(pid: int | None) -> psutil.Process | None:
    try:
        return psutil.Process(pid) if pid is not None else None
    except psutil.Error:  # it died at once: nothing left to kill
        return None


def _tail(path: str, chars: int = STDERR_TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars))
            return fh.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""
