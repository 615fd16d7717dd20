"""The worker process: runs cells one at a time for the executor, on one device.

Started with the `spawn` method in a session of its own, so that the terminal's Ctrl-C reaches
only the parent, which decides what to stop. It is a child subreaper: a descendant whose parent
exits (a daemon's double fork) is re-parented to it rather than to init, so a timeout can find
and kill its whole process tree (torch.compile's helpers, and anything that started a session of
its own, included; see `bigtrain.run.process_tree`). Its stderr goes to a log file so that the tail of what a
crashing kernel printed can be put in the record. It dies with its parent (PR_SET_PDEATHSIG), so
a sweep killed with -9 leaves no orphan burning the GPU.

Messages to the parent speak the worker protocol (`bigtrain.run.worker_protocol`, JSON bytes,
one per `send_bytes`): `ready` once started; `record` after each cell; and after a cell that failed
in Python (error, oom, diverged), `health`, sent after the result so that a health probe that
hangs or kills the process never costs the record. The parent keeps a healthy worker and replaces
an unhealthy one, and records anything off-protocol as the cell's error.

A worker runs the cells of one framework (`BIGTRAIN_WORKER_FRAMEWORK`: torch, jax, tensorflow),
since two frameworks in one process fight over threads and device memory: only a torch worker
imports torch up front, and a jax or tensorflow worker never touches torch's CUDA state.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from bigtrain.run import worker_protocol as protocol
from bigtrain.run.process_tree import mark_as_subreaper

_PR_SET_PDEATHSIG = 1
#: The framework whose cells this worker runs (the pool sets it; one framework per process).
FRAMEWORK_ENV = "BIGTRAIN_WORKER_FRAMEWORK"


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _redirect_stderr(log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stderr.flush()
    os.dup2(fd, 2)
    os.close(fd)


def worker_main(conn: Connection, log_path: str, parent_pid: int) -> None:
    """Entry point of a worker: announce readiness, then run each job the parent sends."""
    os.setsid()
    _die_with_parent()
    mark_as_subreaper()
    if os.getppid() != parent_pid:  # the parent died before PDEATHSIG was armed
        os._exit(1)
    _redirect_stderr(log_path)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    from bigtrain.common.registry import load_plugins
    from bigtrain.run.cell import run_cell
    from bigtrain.run.health import WorkerHealth, check_health

    framework = os.environ.get(FRAMEWORK_ENV, "torch")
    if framework == "torch":
        import torch  # noqa: F401  (paid once per worker, before the first cell's clock starts)

    load_plugins()
    # Everything imported so far lives as long as the worker: keep it out of the collector's
    # scans, so the full collection before each cell costs milliseconds instead of ~0.1 s.
    gc.collect()
    gc.freeze()
    conn.send_bytes(protocol.encode(protocol.ready_message(os.getpid())))
    while True:
        try:
            job: Any = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        record = run_cell(job)  # JSON-clean: run_cell turns an unencodable record into an error
        try:
            conn.send_bytes(protocol.encode(protocol.record_message(record)))
            if record.failed:
                # A framework's device state is its own: its worker is never reused after a failure.
                health = check_health(job.device) if framework == "torch" else WorkerHealth(
                    healthy=False, reason=f"a {framework} worker is replaced after a failed cell")
                conn.send_bytes(protocol.encode(protocol.health_message(health.healthy,
                                                                        health.reason)))
        except (BrokenPipeError, OSError):
            return
