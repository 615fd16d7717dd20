"""Running one cell inside a worker: build, warm up, measure, and turn the outcome into a record.

Exceptions become records here (oom, error, diverged) so that the worker can report them; deaths
by signal, hangs and silent exits are detected by the executor. Every record not built by the
measurement itself comes from `bigtrain.run.records`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from bigtrain.matrix import Cell
from bigtrain.measure.converge import ConvergeSettings
from bigtrain.measure.protocols import STEP_TIME, CellSkipped, StepTimeSettings
from bigtrain.results.schema import CellRecord
# The record builders live in run/records.py; re-exported here, where callers have found them.
from bigtrain.run.records import (  # noqa: F401
    base_record,
    cell_record,
    classify_exception,
    exception_record,
    now_iso,
    traceback_tail,
)


@dataclass(frozen=True, kw_only=True)
class CellJob:
    """What a worker needs to run one cell: picklable, no torch objects."""

    run_id: str
    cell: Cell
    repeat: int
    device: str  # concrete: "cpu" or "cuda:N"
    #: The protocol's settings, built once from the spec (a StepTimeSettings for `step_time`, a
    #: ConvergeSettings for `converge`).
    settings: StepTimeSettings | ConvergeSettings
    protocol: str = STEP_TIME
    seed: int = 0
    telemetry_interval_s: float = 0.1
    #: The executor's limit for this cell, where it says (a data-parallel cell stops its ranks a
    #: little before it, to name the rank at fault).
    timeout_s: float | None = None


def run_cell(job: CellJob) -> CellRecord:
    """Run one cell end to end and return its record; never raises for a cell's own failure.

    The record is JSON-clean (`json_clean`): a workload whose `notes` put something JSON cannot
    hold into `extra` gets an `error` record naming the key, never a crash of the worker or the
    sweep."""
    started = now_iso()
    try:
        if job.cell.world_size > 1:  # N DDP ranks, spawned and watched from here
            from bigtrain.run.distributed import run_distributed_cell

            return json_clean(job, run_distributed_cell(job), started)
        return json_clean(job, _measure(job, started), started)
    except CellSkipped as exc:  # found out only when building (a CUDA graph that cannot capture)
        return base_record(job, status="skipped", reason=str(exc), started_at=started,
                           ended_at=now_iso(), worker_pid=os.getpid())
    except Exception as exc:  # the cell failed; the record says how
        return exception_record(job, exc, started_at=started, worker_pid=os.getpid())


def json_clean(job: CellJob, record: CellRecord, started: str) -> CellRecord:
    """`record`, or an `error` record naming the key when part of it is not JSON (a set, an
    object, NaN in a workload's notes): checked where the record is made, so the pipe, the
    store and every reader only ever see JSON."""
    from bigtrain.run.worker_protocol import unencodable

    try:
        problem = unencodable(record.to_json())
    except RecursionError:
        problem = "a value nested too deeply"
    if problem is None:
        return record
    return base_record(job, status="error",
                       reason=f"the record cannot be stored: {problem} (a workload's notes "
                              f"must be JSON: text, numbers, booleans, lists, objects)"[:400],
                       started_at=started, ended_at=now_iso(), worker_pid=os.getpid())


def _measure(job: CellJob, started: str) -> CellRecord:
    """Build the cell, run its protocol, and turn both into a record."""
    from bigtrain.measure.memory import PeakMemoryTracker
    from bigtrain.measure.protocols import Instruments, resolve_protocol
    from bigtrain.run.build import build_cell, select_device

    protocol = resolve_protocol(job.protocol)
    device = select_device(job.device)
    # Peak memory covers the build too (parameters, optimizer state): start it first.
    memory = PeakMemoryTracker(device)
    memory.start()
    built = build_cell(job.cell, device, job.seed)
    result = protocol.run(built, job.settings,
                          Instruments(memory=memory, sampler=_telemetry_sampler(job)))
    return build_record(job, built, result, started)


def build_record(job: CellJob, built: Any, result: Any, started: str) -> CellRecord:
    """The record of a measured cell: identity and set-up from the build, figures from the
    protocol's result, then FLOPs (counted after the window) and the derived hardware metrics."""
    from bigtrain.measure.flops import FLOPS_CONVENTION
    from bigtrain.workloads import workload_version

    workload = built.workload
    # A replayed CUDA graph dispatches no operators to count: count its eager step.
    flops = _count_flops(getattr(built.step, "eager_step", built.step), job.cell)
    record = base_record(
        job,
        started_at=started,
        ended_at=now_iso(),
        device_name=built.device_name,
        worker_pid=os.getpid(),
        item_unit=workload.item_unit,
        items_per_step=workload.items_per_step,
        param_count=built.param_count,
        workload_version=workload_version(job.cell.model),
        lr_used=getattr(built, "lr_used", None),
        flops_per_step=flops,
        extra={**result.extra(), **built.notes, "flops_convention": FLOPS_CONVENTION},
        **result.record_fields(built),
    )
    return _with_hardware_metrics(record, job.device)


def _telemetry_sampler(job: CellJob) -> Any:
    from bigtrain.measure.telemetry import TelemetrySampler

    return TelemetrySampler.for_device(job.device, interval_s=job.telemetry_interval_s)


#: FLOPs per (model, batch, BN, precision, compile) in this worker. What FlopCounterMode counts
#: (matmuls, convolutions, attention) does not depend on the optimizer, so a reused worker counts
#: each model shape once instead of paying a slow dispatch-mode step for every optimizer.
_FLOPS_CACHE: dict[tuple, float] = {}


def _count_flops(step: Any, cell: Cell) -> float | None:
    """FLOPs of one training step, counted once per model shape, after the timed window."""
    from bigtrain.measure.flops import count_flops

    key = (cell.model, cell.batch_size, cell.batch_norm, cell.precision, cell.compile)
    if key in _FLOPS_CACHE:
        return _FLOPS_CACHE[key]
    flops = count_flops(step, causal_attention="unmasked")
    if flops is None:
        return None  # not cached: another implementation of the same shape may count fine
    _FLOPS_CACHE[key] = float(flops)
    return _FLOPS_CACHE[key]


def _with_hardware_metrics(record: CellRecord, device: str) -> CellRecord:
    """Add achieved TFLOP/s, MFU and the optimizer's bandwidth floor where they can be known."""
    from bigtrain.measure.calibration import load_calibration
    from bigtrain.measure.derived import hardware_metrics

    metrics = hardware_metrics(
        device_name=record.device_name,
        precision=record.precision,
        optimizer=record.optimizer,
        param_count=record.param_count or 0,
        flops_per_step=record.flops_per_step,
        median_step_s=record.step_time_s.median,
        optimizer_phase_s=record.phase_time_s.optimizer if record.phase_time_s else None,
        calibration=load_calibration(device),
    )
    known = {f.name for f in dataclasses.fields(CellRecord)}
    fields = {k: v for k, v in metrics.items() if k in known}
    extra = {**record.extra, **{k: v for k, v in metrics.items() if k not in known}}
    return dataclasses.replace(record, extra=extra, **fields)
