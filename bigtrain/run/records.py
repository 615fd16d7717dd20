"""Every record the run machinery builds itself, in one place.

A measured cell's record is built by the measuring code; every other outcome is decided by the
worker, the executor or the sweep driver, and its record is built here, so that a status and the
wording of its reason are the same whichever executor ran the cell:

| outcome | decided by | builder | status |
| --- | --- | --- | --- |
| a Python exception in the cell | worker | `exception_record` | `oom` or `error` |
| death by a signal | executor | `death_record` | `crashed` |
| exit without a result | executor | `death_record` | `error` |
| past the start or cell time limit | executor | `timeout_record` | `timeout` |
| the executor lost the job (bad reply, lost task) | executor | `executor_error_record` | `error` |
| a cluster node, or the worker on it, lost mid-cell | executor | `lost_worker_record` | `crashed` |
| skipped or unsupported by the matrix | sweep driver | `not_run_record` | the cell's status |

A cell cut off by Ctrl-C or SIGTERM gets no record on purpose: `--resume` runs it again.
"""

from __future__ import annotations

import datetime as _dt
import os
import signal
import socket
import sys
import traceback
from typing import TYPE_CHECKING, Any

from bigtrain.results.schema import CellRecord
from bigtrain.results.store import json_problem

if TYPE_CHECKING:  # the types are only needed for annotations
    from bigtrain.cells.matrix import Cell
    from bigtrain.run.job import CellJob

TRACEBACK_TAIL_CHARS = 4000
REASON_CHARS = 500


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def cell_record(run_id: str, cell: Cell, repeat: int, **fields: Any) -> CellRecord:
    """A record carrying a cell's identity and axes plus `fields`; `host` is this machine's
    name unless `fields` says where the cell ran (a record built away from its node)."""
    fields.setdefault("host", socket.gethostname())
    return CellRecord(run_id=run_id, cell_id=cell.cell_id, repeat=repeat, **cell.axes(), **fields)


def base_record(job: CellJob, **fields: Any) -> CellRecord:
    """A record carrying the job's identity and axes plus `fields`; a converge job's record says
    so, with its seed, whatever became of the cell."""
    fields.setdefault("protocol", job.protocol)
    if job.protocol == "converge":
        fields.setdefault("seed", job.seed)
    return cell_record(job.run_id, job.cell, job.repeat, **fields)


def classify_exception(exc: BaseException) -> str:
    """`oom` for CUDA or host out-of-memory, else `error`."""
    # torch only where the process has it already: a jax or tensorflow worker never imports it
    # for this (their out-of-memory errors are told by the message).
    torch = sys.modules.get("torch")
    torch_oom = (torch.OutOfMemoryError,) if torch is not None else ()
    if isinstance(exc, (MemoryError, *torch_oom)):
        return "oom"
    text = str(exc).lower()
    markers = ("out of memory", "can't allocate memory", "cannot allocate memory",
               "resource_exhausted", "resource exhausted")
    return "oom" if any(marker in text for marker in markers) else "error"


def traceback_tail(exc: BaseException) -> str:
    """The last part of the formatted traceback."""
    text = "".join(traceback.format_exception(exc))
    return text[-TRACEBACK_TAIL_CHARS:]


def exception_record(job: CellJob, exc: BaseException, *, started_at: str,
                     worker_pid: int | None) -> CellRecord:
    """A cell that raised: `oom` or `error`, the exception's first line, its traceback tail."""
    message = str(exc).strip()
    first_line = f"{type(exc).__name__}: {message.splitlines()[0] if message else ''}"
    return base_record(job, status=classify_exception(exc), reason=first_line[:REASON_CHARS],
                       traceback_tail=traceback_tail(exc), started_at=started_at,
                       ended_at=now_iso(), worker_pid=worker_pid)


def exit_cause(exit_code: int | None) -> tuple[str, str]:
    """How a process that ended without a result ended: (`crashed`, "killed by SIGKILL") when a
    signal killed it (a negative exit code, as multiprocessing and subprocess report it), else
    (`error`, "exited with code N")."""
    if exit_code is not None and exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return "crashed", f"killed by {name}"
    return "error", f"exited with code {exit_code}"


def death_record(job: CellJob, *, exit_code: int | None, stderr_tail: str,
                 worker_pid: int | None) -> CellRecord:
    """A worker that ended without a result: `crashed` when a signal killed it, else `error`
    naming the exit code (see `exit_cause`)."""
    status, how = exit_cause(exit_code)
    reason = f"worker {how}" + (" without sending a result" if status == "error" else "")
    return base_record(job, status=status, reason=reason, traceback_tail=stderr_tail or None,
                       ended_at=now_iso(), worker_pid=worker_pid)


def timeout_record(job: CellJob, *, what: str, limit_s: float, stderr_tail: str,
                   worker_pid: int | None, **where: str | None) -> CellRecord:
    """A worker past its limit (`what` is `start` or `cell`), whose process tree was killed.
    `where` (`host`, `node_id`) names a node other than this machine that ran it."""
    return base_record(
        job, status="timeout",
        reason=f"{what} exceeded the {limit_s:g} s limit; worker process tree killed",
        traceback_tail=stderr_tail or None, ended_at=now_iso(), worker_pid=worker_pid, **where,
    )


def executor_error_record(job: CellJob, *, reason: str, detail: str | None = None,
                          worker_pid: int | None = None, **where: str | None) -> CellRecord:
    """The executor could not get a valid result for the job (a malformed reply, a lost task).
    `where` (`host`, `node_id`) names a node other than this machine that had it."""
    return base_record(job, status="error", reason=f"executor: {reason}"[:REASON_CHARS],
                       traceback_tail=(detail or "")[-TRACEBACK_TAIL_CHARS:] or None,
                       ended_at=now_iso(), worker_pid=worker_pid, **where)


def lost_worker_record(job: CellJob, *, node: str, node_lost: bool, host: str | None,
                       node_id: str | None, detail: str | None = None,
                       worker_pid: int | None = None) -> CellRecord:
    """A cluster worker gone mid-cell: `crashed`, naming the node (`node` says it for people:
    its id, address and host). `node_lost` says whether the whole node went, or only the
    worker process on a node that is still up."""
    what = f"node {node} was lost mid-cell" if node_lost else \
        f"the worker process on node {node} died mid-cell"
    return base_record(job, status="crashed", reason=what[:REASON_CHARS],
                       traceback_tail=(detail or "")[-TRACEBACK_TAIL_CHARS:] or None,
                       ended_at=now_iso(), worker_pid=worker_pid, host=host, node_id=node_id)


def not_run_record(run_id: str, cell: Cell, protocol: str = "step_time") -> CellRecord:
    """A cell the matrix decided not to run (`skipped` or `unsupported`), with its reason."""
    at = now_iso()
    return cell_record(run_id, cell, 0, status=cell.status, reason=cell.reason, started_at=at,
                       ended_at=at, protocol=protocol)


def json_clean(job: CellJob, record: CellRecord, started: str) -> CellRecord:
    """`record`, or an `error` record naming the key when part of it is not JSON (a set, an
    object, NaN in a workload's notes): checked where the record is made, so the pipe, the
    store and every reader only ever see JSON."""
    try:
        problem = json_problem(record.to_json())
    except RecursionError:
        problem = "a value nested too deeply"
    if problem is None:
        return record
    return base_record(job, status="error",
                       reason=f"the record cannot be stored: {problem} (a workload's notes "
                              f"must be JSON: text, numbers, booleans, lists, objects)"[:400],
                       started_at=started, ended_at=now_iso(), worker_pid=os.getpid())
