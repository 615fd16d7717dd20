"""Executors: where cells run. Today a local pool of worker processes, one per device.

The sweep hands an executor a list of jobs and a callback; the executor calls the callback with a
CellRecord for every job, whatever happened to it (a result, an exception turned into a record by
the worker, a crash, a timeout, a silent exit). A cluster engine can implement the same
`Executor` protocol without touching the measuring code, which lives in `run_cell`.

Scheduling rules of the local pool:
- one worker per device slot (`cpu`, or `cuda:N` for every visible GPU); GPU slots run in
  parallel; a CPU cell runs alone, since anything beside it would steal its cores (and a CPU
  cell beside GPU cells would steal the cores that feed them);
- a job for `cuda` goes to any free GPU; a job for `cuda:N` waits for that GPU;
- a worker is reused for the next cell on its slot, except after a failed cell (its process state
  is suspect) or when `reuse_workers` is off;
- jobs run in the order given; the sweep interleaves repeats (A B C A B C) and asks for fresh
  workers between rounds with `round_boundary`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Protocol

from bigtrain.results.schema import CellRecord
from bigtrain.run.cell import CellJob, base_record, now_iso
from bigtrain.run.worker import MSG_READY, MSG_RESULT, worker_main

STDERR_TAIL_CHARS = 4000
#: A worker gets this long to start (import torch, initialize CUDA) before it counts as hung.
WORKER_START_TIMEOUT_S = 180.0

ResultCallback = Callable[[CellRecord], None]
StartCallback = Callable[[CellJob], None]


class Executor(Protocol):
    """Runs jobs and reports one record per job through `on_result`."""

    def run(self, jobs: Sequence[CellJob], on_result: ResultCallback,
            on_start: StartCallback | None = None) -> None: ...

    def shutdown(self) -> None: ...


def slots_for(devices: Sequence[str], cuda_count: int) -> list[str]:
    """The worker slots the devices of a sweep need (`cuda` means every visible GPU)."""
    slots: list[str] = []
    for device in devices:
        wanted = [f"cuda:{i}" for i in range(cuda_count)] if device == "cuda" else [device]
        slots.extend(s for s in wanted if s not in slots)
    return slots


def _fits(job: CellJob, slot: str) -> bool:
    axis = job.cell.device
    return axis == slot or (axis == "cuda" and slot.startswith("cuda:"))


@dataclass
class _Worker:
    slot: str
    process: multiprocessing.process.BaseProcess
    conn: Connection
    log_path: str
    ready: bool = False
    job: CellJob | None = None
    deadline: float = 0.0
    started_at: float = field(default_factory=time.monotonic)


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
    ) -> None:
        if not slots:
            raise ValueError("an executor needs at least one device slot")
        self.slots = list(slots)
        self.cell_timeout_s = cell_timeout_s
        self.reuse_workers = reuse_workers
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="bigtrain-workers-"))
        self.worker_env = dict(worker_env or {})
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[str, _Worker] = {}
        self.workers_started = 0

    # -- worker lifecycle ------------------------------------------------------------------
    def _start_worker(self, slot: str) -> _Worker:
        parent_conn, child_conn = self._context.Pipe()
        log_path = str(self.log_dir / f"worker-{slot.replace(':', '')}-{self.workers_started}.log")
        saved = {k: os.environ.get(k) for k in self.worker_env}
        os.environ.update(self.worker_env)
        try:
            process = self._context.Process(
                target=worker_main, args=(child_conn, log_path, os.getpid()),
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
        worker = _Worker(slot=slot, process=process, conn=parent_conn, log_path=log_path)
        worker.deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        self._workers[slot] = worker
        return worker

    def _kill(self, worker: _Worker) -> None:
        """Kill the worker's whole process group (its session), then reap it."""
        try:
            os.killpg(worker.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            worker.process.kill()
        except (ProcessLookupError, AttributeError):
            pass
        worker.process.join(timeout=10)
        worker.conn.close()
        self._workers.pop(worker.slot, None)

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
            self._workers.pop(worker.slot, None)

    def retire_all(self) -> None:
        """Stop every idle worker so the next cells start in fresh processes."""
        for worker in list(self._workers.values()):
            if worker.job is None:
                self._stop_gracefully(worker)

    def shutdown(self) -> None:
        """Kill every worker now (interrupts) — nothing half-done survives."""
        for worker in list(self._workers.values()):
            self._kill(worker)

    # -- running ---------------------------------------------------------------------------
    def run(self, jobs: Sequence[CellJob], on_result: ResultCallback,
            on_start: StartCallback | None = None) -> None:
        """Run every job, calling `on_result` exactly once per job, in completion order."""
        pending = list(jobs)
        while pending or any(w.job is not None for w in self._workers.values()):
            self._dispatch(pending, on_start)
            self._collect(on_result)

    def _busy_cpu(self) -> bool:
        return any(w.job is not None and w.slot == "cpu" for w in self._workers.values())

    def _dispatch(self, pending: list[CellJob], on_start: StartCallback | None) -> None:
        for slot in self.slots:
            worker = self._workers.get(slot)
            if worker is not None and worker.job is not None:
                continue
            if self._busy_cpu():
                return
            index = next((i for i, job in enumerate(pending) if _fits(job, slot)), None)
            if index is None:
                continue
            job = pending[index]
            if slot == "cpu" and any(w.job is not None for w in self._workers.values()):
                continue  # a CPU cell waits until it has the machine to itself
            if slot != "cpu" and any(j.cell.device == "cpu" for j in pending[:index]):
                continue  # keep the given order: an earlier CPU cell goes first
            pending.pop(index)
            worker = worker or self._start_worker(slot)
            job = dataclasses.replace(job, device=slot)  # `cuda` becomes the GPU that runs it
            worker.job = job
            if worker.ready:
                worker.deadline = time.monotonic() + self.cell_timeout_s
                worker.conn.send(job)
            if on_start is not None:
                on_start(job)

    def _collect(self, on_result: ResultCallback) -> None:
        busy = [w for w in self._workers.values() if w.job is not None]
        if not busy:
            return
        timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
        waitables = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = wait(waitables, timeout=timeout)
        now = time.monotonic()
        for worker in busy:
            job = worker.job
            assert job is not None
            if worker.conn in ready:
                try:
                    kind, payload = worker.conn.recv()
                except (EOFError, OSError):
                    kind, payload = None, None
                if kind == MSG_READY:
                    worker.ready = True
                    worker.deadline = now + self.cell_timeout_s
                    worker.conn.send(job)
                    continue
                if kind == MSG_RESULT:
                    record = CellRecord.from_json(payload)
                    worker.job = None
                    if record.failed or not self.reuse_workers:
                        self._stop_or_kill_after(worker, record)
                    on_result(record)
                    continue
            if not worker.process.is_alive() or worker.process.sentinel in ready:
                worker.process.join(timeout=5)
                on_result(self._death_record(worker, job))
                worker.job = None
                self._kill(worker)
            elif now >= worker.deadline:
                what = "start" if not worker.ready else "cell"
                limit = WORKER_START_TIMEOUT_S if not worker.ready else self.cell_timeout_s
                self._kill(worker)
                worker.job = None
                on_result(base_record(
                    job, status="timeout",
                    reason=f"{what} exceeded the {limit:g} s limit; worker process tree killed",
                    traceback_tail=_tail(worker.log_path) or None,
                    ended_at=now_iso(), worker_pid=worker.process.pid,
                ))

    def _stop_or_kill_after(self, worker: _Worker, record: CellRecord) -> None:
        if record.failed:
            self._kill(worker)  # never reuse a worker after a failed cell
        else:
            self._stop_gracefully(worker)

    def _death_record(self, worker: _Worker, job: CellJob) -> CellRecord:
        code = worker.process.exitcode
        stderr_tail = _tail(worker.log_path)
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            status, reason = "crashed", f"worker killed by {name}"
        else:
            status = "error"
            reason = f"worker exited with code {code} without sending a result"
        return base_record(job, status=status, reason=reason, traceback_tail=stderr_tail or None,
                           ended_at=now_iso(), worker_pid=worker.process.pid)


def _tail(path: str, chars: int = STDERR_TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars))
            return fh.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""
