"""Running one cell inside a worker: build, warm up, measure, and turn the outcome into a record.

Exceptions become records here (oom, error, diverged) so that the worker can report them; deaths
by signal, hangs and silent exits are detected by the executor. Every record not built by the
measurement itself comes from `bigtrain.run.records`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
from dataclasses import dataclass
from typing import Any

from bigtrain.matrix import Cell
from bigtrain.results.schema import CellRecord, PhaseTimes, StepTimeStats
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
    warmup_s: float
    duration_s: float
    min_steps: int
    seed: int = 0
    telemetry_interval_s: float = 0.1


def run_cell(job: CellJob) -> CellRecord:
    """Run one cell end to end and return its record; never raises for a cell's own failure."""
    started = now_iso()
    try:
        return _measure(job, started)
    except Exception as exc:  # the cell failed; the record says how
        return exception_record(job, exc, started_at=started, worker_pid=os.getpid())


def _measure(job: CellJob, started: str) -> CellRecord:
    import torch

    from bigtrain.measure.memory import PeakMemoryTracker
    from bigtrain.measure.step_loop import LoopSettings, TrainingStep, run_loop
    from bigtrain.optim import build_optimizer, resolve_optimizer
    from bigtrain.precision import resolve_precision
    from bigtrain.workloads import resolve_model

    cell = job.cell
    device = torch.device(job.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    device_name = _device_name(device)
    recipe = resolve_precision(cell.precision)
    recipe.apply_backend_flags()
    memory = PeakMemoryTracker(device)
    memory.start()

    model_ref = resolve_model(cell.model)
    workload = model_ref.family.build(
        model_ref.size.name,
        batch_size=cell.batch_size,
        batch_norm=cell.batch_norm == "on",
        device=device,
        seed=job.seed,
    )
    if cell.compile == "on":
        workload.model = torch.compile(workload.model)
    workload.model.train()
    param_count = sum(p.numel() for p in workload.model.parameters())
    optimizer, optimizer_step = build_optimizer(
        resolve_optimizer(cell.optimizer), cell.impl, workload.model.parameters()
    )
    step = TrainingStep(workload, optimizer, optimizer_step, recipe, device)

    sampler = _telemetry_sampler(job)
    settings = LoopSettings(
        warmup_s=job.warmup_s,
        # Stretch the window on a GPU so NVML can resolve it (a too-short window is marked).
        duration_s=max(job.duration_s, sampler.min_window_s),
        min_steps=job.min_steps,
    )
    def window_open() -> None:
        memory.window_open()
        sampler.start()

    loop = run_loop(step, device, settings, on_window_open=window_open,
                    on_window_close=sampler.stop)
    peak = memory.stop()

    stats = StepTimeStats.from_samples(loop.step_times_s)
    items_per_s = workload.items_per_step / stats.median
    telemetry, telemetry_reason = sampler.result(
        window_s=loop.window_s,
        steps=len(loop.step_times_s),
        items=workload.items_per_step * len(loop.step_times_s),
    )
    flops = _count_flops(step, cell)

    status, reason = "ok", None
    if not (math.isfinite(loop.loss_first) and math.isfinite(loop.loss_last)):
        status = "diverged"
        reason = f"non-finite loss: first {loop.loss_first}, last {loop.loss_last}"
    extra: dict[str, Any] = {"warmup_settled": loop.warmup_settled,
                             "peak_rss_method": peak.rss_method}
    record = base_record(
        job,
        status=status,
        reason=reason,
        started_at=started,
        ended_at=now_iso(),
        device_name=device_name,
        worker_pid=os.getpid(),
        step_time_s=stats,
        step_times_s=loop.step_times_s,
        phase_time_s=PhaseTimes(
            forward=statistics.median(loop.forward_s),
            backward=statistics.median(loop.backward_s),
            optimizer=statistics.median(loop.optimizer_s),
        ),
        phase_times_s={"forward": loop.forward_s, "backward": loop.backward_s,
                       "optimizer": loop.optimizer_s},
        warmup_steps=loop.warmup_steps,
        warmup_s=loop.warmup_s,
        window_s=loop.window_s,
        items_per_s=items_per_s,
        item_unit=workload.item_unit,
        items_per_step=workload.items_per_step,
        param_count=param_count,
        peak_mem_allocated_bytes=peak.allocated_bytes,
        peak_mem_reserved_bytes=peak.reserved_bytes,
        peak_rss_bytes=peak.rss_bytes,
        loss_first=_json_float(loop.loss_first),
        loss_last=_json_float(loop.loss_last),
        telemetry=telemetry,
        telemetry_reason=telemetry_reason,
        flops_per_step=flops,
        extra=extra,
    )
    return _with_hardware_metrics(record, job.device)


def _json_float(value: float) -> float | None:
    """JSON has no NaN: a non-finite loss is stored as null (the status says diverged)."""
    return value if math.isfinite(value) else None


def _device_name(device: Any) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from bigtrain.envinfo import cpu_model

    return cpu_model() or platform.processor() or "CPU"


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
    flops = count_flops(step)
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
