"""Running a data-parallel cell (`world_size` N > 1): spawn N ranks, watch them, merge their records.

The worker that got the cell starts N rank processes (`python -m bigtrain.run.rank`) with
torchrun's environment contract -- MASTER_ADDR (127.0.0.1), MASTER_PORT (a free port), RANK,
LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE -- each in a session of its own and dying with the worker.
NCCL ranks run on cuda:0..N-1; gloo ranks share the CPU, one thread each, each pinned to a core of
its own where the worker may use N cores. The executor gives the cell those devices alone
(`bigtrain.run.local_pool`).

Outcomes, one record each:
- every rank measured: the slowest rank's record (its step-time distribution is the cell's), with
  every rank's median (`rank_step_time_s`), the communication share of the step, and throughput
  over all ranks (`items_per_step` and `items_per_s` count every rank's items);
- a rank that died, or failed in Python: the whole cell ends at once (`crashed` for a signal,
  `error`/`oom` for an exception, `error` for a silent exit), its reason naming the rank; the
  other ranks are killed with their process trees (`bigtrain.run.process_tree`);
- past the cell's limit: `timeout`, naming the rank(s) behind the others on the progress board.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

import bigtrain
from bigtrain.results.schema import CellRecord
from bigtrain.run.process_tree import kill_tree
from bigtrain.run.progress_board import ProgressBoard, laggards
from bigtrain.run.rank import (
    BOARD_FILE,
    COLLECTIVE_TIMEOUT_ENV,
    CORE_ENV,
    JOB_FILE,
    log_path,
    result_path,
)
from bigtrain.run.records import (
    REASON_CHARS,
    TRACEBACK_TAIL_CHARS,
    base_record,
    exit_cause,
    now_iso,
)

#: Used where the executor did not say how long the cell may take.
DEFAULT_TIMEOUT_S = 600.0
#: The ranks stop this long (at most) before the executor's own limit, so that the record names
#: the rank at fault instead of the executor's plain timeout.
TIMEOUT_MARGIN_S = 10.0
POLL_INTERVAL_S = 0.05


@dataclass(frozen=True, kw_only=True)
class RankExit:
    """How one rank ended: its exit status and the record it wrote (None: it wrote none)."""

    rank: int
    exit_code: int | None
    record: CellRecord | None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (as torchrun picks one for a standalone run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rank_deadline_s(timeout_s: float | None) -> float:
    """How long the ranks may run: a little less than the executor's limit for the cell."""
    limit = timeout_s or DEFAULT_TIMEOUT_S
    return max(limit - TIMEOUT_MARGIN_S, 0.8 * limit)


def cpu_cores_for(world_size: int) -> list[int] | None:
    """The core each CPU rank is pinned to, or None where this process may use fewer cores."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None
    return cores[:world_size] if len(cores) >= world_size else None


def rank_environment(rank: int, world_size: int, port: int, *, cpu: bool,
                     cores: list[int] | None, timeout_s: float) -> dict[str, str]:
    """The environment of rank `rank`: torchrun's variables, plus the thread and core settings."""
    package_root = str(Path(bigtrain.__file__).resolve().parent.parent)
    env = {**os.environ,
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
           "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
           "LOCAL_WORLD_SIZE": str(world_size), COLLECTIVE_TIMEOUT_ENV: f"{timeout_s:g}",
           # The rank imports this checkout's bigtrain, whatever its working folder.
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH"))
                                         if p)}
    if cpu:
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one box: loopback, whatever the hostname says
        if cores is not None:
            env[CORE_ENV] = str(cores[rank])
    return env


def run_distributed_cell(job: Any, *, world_size: int | None = None) -> CellRecord:
    """Run `job` (a CellJob) as `world_size` DDP ranks (default: its cell's world_size) and
    return one record; never raises for a failure of the cell or of a rank."""
    world_size = world_size or job.cell.world_size
    cpu = not job.device.startswith("cuda")
    started = now_iso()
    deadline_s = rank_deadline_s(getattr(job, "timeout_s", None))
    cores = cpu_cores_for(world_size) if cpu else None
    with tempfile.TemporaryDirectory(prefix="bigtrain-ranks-") as folder:
        job_dir = Path(folder)
        with open(job_dir / JOB_FILE, "wb") as fh:
            pickle.dump(job, fh)
        board = ProgressBoard.create(job_dir / BOARD_FILE, world_size)
        port = free_port()
        processes: list[subprocess.Popen] = []
        handles: list[psutil.Process | None] = []
        try:
            for rank in range(world_size):
                with open(log_path(job_dir, rank), "wb") as log:
                    process = subprocess.Popen(
                        [sys.executable, "-m", "bigtrain.run.rank", str(job_dir), job.run_id],
                        env=rank_environment(rank, world_size, port, cpu=cpu, cores=cores,
                                             timeout_s=deadline_s),
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True)
                processes.append(process)
                handles.append(_handle(process.pid))
            outcome, codes = _watch(processes, time.monotonic() + deadline_s)
            progress = board.read()
        finally:
            for handle, process in zip(handles, processes):
                if process.poll() is None and handle is not None:
                    kill_tree(handle)
                else:
                    # Exited: helpers it left in its session would still be there.
                    _kill_group(process.pid)
            for process in processes:
                process.wait(timeout=30)
            board.close()
        # Exit codes as they were when the watch ended: ranks killed here after that are no cause.
        exits = [RankExit(rank=r, exit_code=codes[r], record=_read_record(job_dir, r))
                 for r in range(world_size)]
        logs = [_tail(log_path(job_dir, r)) for r in range(world_size)]
    backend = "gloo" if cpu else "nccl"
    common = {"started_at": started, "worker_pid": os.getpid(), "dist_backend": backend}
    if outcome == "timeout":
        behind = laggards(progress) or list(range(world_size))
        states = "; ".join(f"rank {p.rank}: {p.phase_name}, {p.buckets} gradient bucket(s) "
                           f"all-reduced" for p in progress)
        reason = (f"{_ranks(behind)} stopped making progress: the data-parallel cell exceeded "
                  f"its {deadline_s:g} s limit ({states}); every rank's process tree killed")
        return base_record(job, status="timeout", reason=reason[:REASON_CHARS],
                           traceback_tail=_joined_tails(logs, behind), ended_at=now_iso(),
                           **common)
    if outcome == "failed":
        return _failure_record(job, exits, logs, common)
    return merge_rank_records([e.record for e in exits], world_size=world_size, cores=cores,
                              worker_pid=os.getpid(), backend=backend)


def _watch(processes: list[subprocess.Popen], deadline: float) -> tuple[str, list[int | None]]:
    """Wait for the ranks: `done` (all exited 0), `failed` (one ended otherwise: the caller stops
    the others at once), or `timeout`; with every rank's exit code then (None: running)."""
    while True:
        codes = [p.poll() for p in processes]
        if all(code == 0 for code in codes):
            return "done", codes
        if any(code not in (None, 0) for code in codes):
            return "failed", codes
        if time.monotonic() >= deadline:
            return "timeout", codes
        time.sleep(POLL_INTERVAL_S)


def _failure_record(job: Any, exits: list[RankExit], logs: list[str],
                    common: dict[str, Any]) -> CellRecord:
    """The record of a cell whose rank failed: the first cause, named by rank.

    A rank that died without a record (a signal, a silent exit) is the cause before a rank that
    wrote an exception record (peers of a dead rank fail in their all-reduce, after it); among
    exception records, the earliest."""
    failed = [e for e in exits if e.exit_code not in (None, 0)]
    silent = [e for e in failed if e.record is None]
    if silent:
        cause = silent[0]
        status, how = exit_cause(cause.exit_code)
        reason = (f"rank {cause.rank} {how}" + (" without a result" if status == "error" else "")
                  + "; the other ranks were stopped")
        return base_record(job, status=status, reason=reason[:REASON_CHARS],
                           traceback_tail=logs[cause.rank] or None, ended_at=now_iso(), **common)
    cause = min(failed, key=lambda e: (e.record.ended_at or "", e.rank))  # type: ignore[union-attr]
    record = cause.record
    assert record is not None
    return base_record(job, status=record.status,
                       reason=f"rank {cause.rank}: {record.reason}"[:REASON_CHARS],
                       traceback_tail=record.traceback_tail or logs[cause.rank] or None,
                       ended_at=now_iso(), **common)


def merge_rank_records(records: list[CellRecord | None], *, world_size: int,
                       cores: list[int] | None, worker_pid: int, backend: str) -> CellRecord:
    """One cell record from every rank's record: the slowest rank's distribution, every rank's
    median, the communication share, throughput over all ranks."""
    ranks = [r for r in records if r is not None]
    if len(ranks) != world_size:
        raise ValueError(f"{world_size} ranks measured but {len(ranks)} records were written")
    not_ok = [r for r in ranks if r.status != "ok"]
    if not_ok:  # e.g. a diverged loss: the first such rank's record speaks for the cell
        first = not_ok[0]
        rank = (first.extra or {}).get("rank", ranks.index(first))
        return dataclasses.replace(first, reason=f"rank {rank}: {first.reason}",
                                   worker_pid=worker_pid, dist_backend=backend)
    medians = [r.step_time_s.median for r in ranks]  # type: ignore[union-attr]
    slowest = ranks[medians.index(max(medians))]
    median_s = slowest.step_time_s.median  # type: ignore[union-attr]
    no_sync_s = float(slowest.extra["no_sync_step_time_s"])
    items_per_step = (slowest.items_per_step or 0) * world_size
    extra = {key: value for key, value in slowest.extra.items()
             if key not in ("rank_pid", "rank_device", "rank_core", "no_sync_step_time_s")}
    extra.update(
        slowest_rank=slowest.extra.get("rank"),
        rank_pids=[r.extra.get("rank_pid") for r in ranks],
        cpu_pinning=(", ".join(f"rank {r}: core {c}" for r, c in enumerate(cores)) if cores
                     else "not pinned: fewer cores than ranks" if backend == "gloo"
                     else "n/a (GPU ranks)"),
        per_rank_fields="items_per_step, items_per_s, samples_per_optimizer_step and samples_per_s "
                        "count every rank; memory (each rank's in rank_peak_mem_bytes), memory "
                        "per sample, FLOPs, MFU and telemetry are the slowest rank's own",
    )
    extra.pop("rank", None)
    return dataclasses.replace(
        slowest,
        **_profile_fields(ranks),
        worker_pid=worker_pid,
        rank_step_time_s=tuple(medians),
        no_sync_step_time_s=no_sync_s,
        comm_share_pct=100.0 * max(0.0, 1.0 - no_sync_s / median_s),
        items_per_step=items_per_step,
        items_per_s=items_per_step / median_s,
        samples_per_optimizer_step=(slowest.batch_size or 0) * world_size or None,
        samples_per_s=(slowest.batch_size or 0) * world_size / median_s or None,
        rank_peak_mem_bytes=_rank_peaks(ranks),
        peak_rss_bytes=max((r.peak_rss_bytes or 0 for r in ranks), default=None) or None,
        dist_backend=backend,
        extra=extra,
    )


def _profile_fields(ranks: list[CellRecord]) -> dict[str, object]:
    """The cell's profile fields: rank 0's (it writes the summary and names every rank's trace),
    unless another rank's profile failed, which fails the cell's profile with that rank named."""
    fields = ("profile_status", "profile_reason", "profile_path", "profile_summary")
    out = {name: getattr(ranks[0], name, None) for name in fields}
    for index, record in enumerate(ranks):
        if getattr(record, "profile_status", None) == "failed":
            out.update(profile_status="failed", profile_summary=None,
                       profile_reason=f"rank {index}: {record.profile_reason}")
            break
    return out


def _rank_peaks(ranks: list[CellRecord]) -> tuple[int, ...] | None:
    """Each rank's peak memory (allocated on CUDA, RSS on the CPU), or None where one is unknown."""
    from bigtrain.run.measured import peak_memory_bytes

    peaks = [peak_memory_bytes(r) for r in ranks]
    return None if any(p is None for p in peaks) else tuple(int(p) for p in peaks)


def _read_record(job_dir: Path, rank: int) -> CellRecord | None:
    """The record rank `rank` left (a worker-protocol `record` message); None when it left none
    or broke the protocol (the rank then reads as one that died without a result)."""
    from bigtrain.run import worker_protocol as protocol

    try:
        raw = result_path(job_dir, rank).read_bytes()
    except OSError:
        return None
    try:
        return protocol.decode(raw, expect=(protocol.RECORD,)).record
    except protocol.ProtocolError:
        return None


def _ranks(ranks: list[int]) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def _joined_tails(logs: list[str], ranks: list[int]) -> str | None:
    text = "\n".join(f"--- rank {r} ---\n{logs[r]}" for r in ranks if logs[r])
    return text[-TRACEBACK_TAIL_CHARS:] or None


def _handle(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, chars: int = TRACEBACK_TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - chars))
            return fh.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return ""
