"""One rank of a data-parallel cell: `python -m bigtrain.run.rank JOB_DIR RUN_ID`.

Started by `bigtrain.run.distributed` with torchrun's environment contract (MASTER_ADDR,
MASTER_PORT, RANK, LOCAL_RANK, WORLD_SIZE); it joins the process group (NCCL on cuda:LOCAL_RANK,
gloo on the CPU), builds the cell as every single-process cell is built, wraps the model in
DistributedDataParallel and measures its own steps with the step-time loop:

1. warm-up: `step_loop.warm_up` on steps under `no_sync()` -- no collectives, so each rank may
   stop after its own number of steps, exactly as a single-process cell does;
2. a fixed number of synchronized steps on every rank (the communicator's buffers are made here),
   whose slowest median, agreed with an all-reduce (MAX), sets one window length in steps for all
   ranks: a time-bounded window could end one step apart on two ranks and leave one waiting in an
   all-reduce the other never starts;
3. the timed window (`step_loop.measure_window`) of those synchronized steps;
4. the same number of steps under `no_sync()`: compute without DDP's gradient all-reduce, for the
   communication share.

DDP's all-reduce is torch's own default hook, registered through a thin wrapper that counts the
gradient buckets this rank made ready on a shared progress board (`bigtrain.run.progress_board`):
when a cell hangs, the rank behind the others is the one named. The rank writes its record (the
single-process record of its own steps, plus its figures in `extra`) to JOB_DIR/rank-R.json, as a
`record` message of the worker protocol (`bigtrain.run.worker_protocol`).
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import pickle
import signal
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bigtrain.run.progress_board import (
    PHASE_BUILT,
    PHASE_DONE,
    PHASE_JOINED,
    PHASE_NO_SYNC,
    PHASE_SYNC_WARMUP,
    PHASE_WARMUP,
    PHASE_WINDOW,
    ProgressBoard,
)

JOB_FILE = "job.pickle"
BOARD_FILE = "progress.bin"
#: The core a CPU rank is pinned to (set by the parent where there are enough cores).
CORE_ENV = "BIGTRAIN_RANK_CORE"
#: Seconds the rank may wait in a collective before torch.distributed gives up (set by the parent
#: to the cell's limit, so this never fires before the parent's own deadline).
COLLECTIVE_TIMEOUT_ENV = "BIGTRAIN_RANK_TIMEOUT_S"
#: Synchronized steps run before the window on every rank (communication warm-up + estimate).
SYNC_WARMUP_STEPS = 5
#: A window never holds more steps than this, however fast the step.
MAX_WINDOW_STEPS = 100_000
#: Exit status of a rank that wrote a failure record (a Python exception in the cell).
EXIT_FAILED = 3
_PR_SET_PDEATHSIG = 1


def result_path(job_dir: Path, rank: int) -> Path:
    """Where rank `rank` writes its record."""
    return job_dir / f"rank-{rank}.json"


def log_path(job_dir: Path, rank: int) -> Path:
    """Where rank `rank`'s stdout and stderr go."""
    return job_dir / f"rank-{rank}.log"


class NoSyncStep:
    """A training step run under `no_sync` (DDP's `no_sync()`, or `fsdp_no_sync` of an FSDP2
    model): the gradients stay local (no all-reduce, no reduce-scatter)."""

    separable_phases = True

    def __init__(self, step: Any, no_sync: Any) -> None:
        self.step = step
        self.no_sync = no_sync
        self.micro_batches = getattr(step, "micro_batches", 1)

    def __call__(self, mark: Any = lambda: None) -> Any:
        with self.no_sync():
            return self.step(mark)


def fsdp_no_sync(model: Any) -> Any:
    """A context in which an FSDP2 model's backward keeps its gradients unreduced on each rank
    (`set_requires_gradient_sync(False)`); parameter all-gathers still run in it."""
    from contextlib import contextmanager

    depth = [0]  # nested (a no-sync step's own accumulation): only the outermost switches back

    @contextmanager
    def context():  # noqa: ANN202
        depth[0] += 1
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                model.set_requires_gradient_sync(True)

    return context


def _die_with_parent() -> None:
    # A rank outliving the worker that started it would hold a core or a GPU: die with it.
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


def _counting_allreduce(board_slot, bucket):  # noqa: ANN001, ANN202
    """torch's default DDP all-reduce hook, after counting the bucket on the progress board.

    Unannotated on purpose: DDP refuses a hook whose annotations are not its own types."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    board_slot.tick()
    return allreduce_hook(None, bucket)  # None: the default (world) process group


def _agree_max(value: float, device: Any) -> float:
    """The largest `value` over all ranks (one all-reduce)."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def measure_rank(job: Any, rank: int, local_rank: int, world_size: int,
                 board: ProgressBoard) -> Any:
    """Measure this rank's steps and return its CellRecord (raises for a cell's own failure)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from bigtrain.measure.memory import PeakMemoryTracker
    from bigtrain.measure.protocols import StepTimeResult
    from bigtrain.measure.step_loop import LoopResult, measure_window, synchronize, warm_up
    from bigtrain.measure.telemetry import TelemetrySampler
    from bigtrain.run.build import build_cell, select_device
    from bigtrain.run.measured import build_record
    from bigtrain.run.records import now_iso

    started = now_iso()
    cuda = job.device.startswith("cuda")
    device = select_device(f"cuda:{local_rank}" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(1)  # one core per rank; gloo's own threads do the communication
    timeout_s = float(os.environ.get(COLLECTIVE_TIMEOUT_ENV, "600"))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s),
                            **({"device_id": device} if cuda else {}))
    board.phase(rank, PHASE_JOINED)
    memory = PeakMemoryTracker(device)
    memory.start()
    parallel = getattr(job.cell, "parallel", "ddp")
    if parallel == "ddp":
        built = build_cell(job.cell, device, job.seed)
        ddp = DistributedDataParallel(built.workload.model,
                                      device_ids=[device.index] if cuda else None)
        ddp.register_comm_hook(board.slot(rank), _counting_allreduce)
        built.workload.model = ddp
        no_sync = ddp.no_sync
    else:  # FSDP2: sharded before the optimizer is built, so it holds the shards
        from bigtrain.training.levers import apply_fsdp

        built = build_cell(job.cell, device, job.seed,
                           prepare_model=lambda model: apply_fsdp(
                               model, offload=parallel == "fsdp-offload"))
        no_sync = fsdp_no_sync(built.workload.model)
    # Gradient accumulation: every micro-batch but the last keeps its gradients local.
    built.step.no_sync = no_sync
    synced, unsynced = built.step, NoSyncStep(built.step, no_sync)
    board.phase(rank, PHASE_BUILT)

    settings = job.settings
    sampler = TelemetrySampler.for_device(str(device), interval_s=job.telemetry_interval_s)
    duration_s = max(settings.duration_s, sampler.min_window_s)
    board.phase(rank, PHASE_WARMUP)
    if parallel == "ddp":
        warm = warm_up(unsynced, device, settings.warmup_s, built.compile_probe)
    else:  # FSDP all-gathers parameters even without gradient sync: the same steps on all ranks
        warm = _fixed_warm_up(unsynced, device)
    board.phase(rank, PHASE_SYNC_WARMUP)
    sync_start = time.perf_counter()
    sync_times: list[float] = []
    for _ in range(SYNC_WARMUP_STEPS):
        t0 = time.perf_counter()
        synced()
        synchronize(device)
        sync_times.append(time.perf_counter() - t0)
    sync_warmup_s = time.perf_counter() - sync_start
    estimate_s = _agree_max(statistics.median(sync_times[-3:]), device)
    steps = min(MAX_WINDOW_STEPS, max(settings.min_steps, math.ceil(duration_s / estimate_s)))
    # A window of exactly `steps` steps on every rank: the loop stops at min_steps once any time
    # has passed.
    fixed = dataclasses.replace(settings, duration_s=1e-9, min_steps=steps)

    def window_open() -> None:
        memory.window_open()
        sampler.start()

    board.phase(rank, PHASE_WINDOW)
    window = measure_window(synced, device, fixed, window_open, sampler.stop,
                            expected_step_s=estimate_s)
    peak = memory.stop()
    board.phase(rank, PHASE_NO_SYNC)
    compute = measure_window(unsynced, device, fixed, expected_step_s=estimate_s)
    telemetry, telemetry_reason = sampler.result(
        window_s=window.window_s, steps=steps, items=built.workload.items_per_step * steps)
    loop = LoopResult(window=window, warmup_steps=warm.steps + SYNC_WARMUP_STEPS,
                      warmup_s=warm.seconds + sync_warmup_s, warmup_settled=warm.settled,
                      loss_first=warm.loss_first,
                      loss_last=float(window.last_loss.detach().float().item()),
                      compile=warm.compile)
    # The profiled window: the same fixed number of synced steps on every rank (each rank's
    # collectives must meet), after every timed window; each rank leaves its own trace.
    profile = None
    if getattr(job, "profile", None) is not None:
        from bigtrain.measure.profile_cell import profile_built

        profile = profile_built(built, synced, job.profile, cell_id=job.cell.cell_id, rank=rank,
                                world_size=world_size, max_steps=steps)
    result = StepTimeResult(
        loop=loop, peak=peak, telemetry=telemetry, telemetry_reason=telemetry_reason,
        recompute_reason=("not measured for data-parallel cells: their companion window is the "
                          "no-sync one" if built.notes.get("checkpointing_method") else None),
        profile=profile)
    # FLOPs are counted on a step without the all-reduce, so no rank waits on another meanwhile.
    record = build_record(job, dataclasses.replace(built, step=unsynced), result, started)
    no_sync_median_s = statistics.median(compute.step_times_s)
    extra = {**record.extra, "rank": rank, "rank_pid": os.getpid(),
             "no_sync_step_time_s": no_sync_median_s,
             "comm_share_method": (
                 "DDP all-reduce: synced vs no_sync() steps" if parallel == "ddp" else
                 "FSDP2 gradient reduce-scatter only: synced vs set_requires_gradient_sync(False) "
                 "steps; parameter all-gathers run in both, so the share is a lower bound"),
             "rank_device": str(device), "rank_core": os.environ.get(CORE_ENV)}
    return dataclasses.replace(record, extra=extra)


#: Warm-up steps of an FSDP rank: a fixed count, since every FSDP step is a collective.
FSDP_WARMUP_STEPS = 3


def _fixed_warm_up(step: Any, device: Any) -> Any:
    """FSDP_WARMUP_STEPS steps on every rank (a time-bounded warm-up could end one step apart on
    two ranks, and leave one waiting in an all-gather the other never starts)."""
    from bigtrain.measure.step_loop import WarmUp, synchronize

    start = time.perf_counter()
    times: list[float] = []
    loss_first = float(step().detach().float().item())
    for _ in range(FSDP_WARMUP_STEPS - 1):
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return WarmUp(steps=FSDP_WARMUP_STEPS, seconds=time.perf_counter() - start, settled=False,
                  loss_first=loss_first, recent_step_s=statistics.median(times) if times else 0.0)


def _write_record(path: Path, record: Any) -> None:
    """The rank's record as a worker-protocol `record` message, replaced atomically."""
    from bigtrain.run import worker_protocol as protocol

    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(protocol.encode(protocol.record_message(record)))
    os.replace(temporary, path)  # the parent never reads half a record


def main(argv: list[str]) -> int:
    """Run one rank; the exit status says whether it measured (0) or failed (EXIT_FAILED)."""
    _die_with_parent()
    job_dir = Path(argv[1])
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    core = os.environ.get(CORE_ENV)
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(core)})
    board = ProgressBoard.open(job_dir / BOARD_FILE, world_size)
    with open(job_dir / JOB_FILE, "rb") as fh:
        job = pickle.load(fh)  # written by our own parent process, in a folder it made

    from bigtrain.common.registry import load_plugins
    from bigtrain.run.records import exception_record, now_iso

    started = now_iso()
    try:
        load_plugins()
        from bigtrain.run.records import json_clean

        record = json_clean(job, measure_rank(job, rank, local_rank, world_size, board), started)
    except Exception as exc:  # the cell failed on this rank; the parent decides what it means
        record = exception_record(job, exc, started_at=started, worker_pid=os.getpid())
        _write_record(result_path(job_dir, rank), record)
        sys.stderr.flush()
        os._exit(EXIT_FAILED)  # without waiting for the process group's shutdown
    _write_record(result_path(job_dir, rank), record)
    board.phase(rank, PHASE_DONE)
    import torch.distributed as dist

    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
