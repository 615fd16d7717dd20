"""The record of a measured cell: identity and set-up from the build, figures from the protocol's
result, FLOPs counted after the window, then the derived hardware metrics. Shared by a single
worker (`cell.py`) and a data-parallel rank (`rank.py`), below both.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from bigtrain.cells.matrix import Cell
from bigtrain.results.schema import CellRecord
from bigtrain.run.job import CellJob
from bigtrain.run.records import base_record, now_iso


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
    record = dataclasses.replace(record, **optimizer_fields(job.cell, built, record))
    return _with_hardware_metrics(with_lever_figures(record), job.device)


def optimizer_fields(cell: Cell, built: Any, record: CellRecord) -> dict[str, Any]:
    """Issue 25's fields: the optimizer's package and version, and the memory anatomy
    (bigtrain.measure.anatomy), read after the window."""
    from bigtrain.measure.anatomy import memory_anatomy
    from bigtrain.training.optim import optimizer_provenance, resolve_optimizer

    package, version = optimizer_provenance(resolve_optimizer(cell.optimizer))
    return {"optimizer_package": package, "optimizer_package_version": version,
            **memory_anatomy(built, record.peak_mem_allocated_bytes)}


def peak_memory_bytes(record: CellRecord) -> int | None:
    """The memory figure the levers are read against: allocated device memory on CUDA, else the
    process's peak RSS."""
    if record.peak_mem_allocated_bytes is not None:
        return record.peak_mem_allocated_bytes
    return record.peak_rss_bytes


def with_lever_figures(record: CellRecord) -> CellRecord:
    """The record with its memory-lever figures (micro batch, samples per optimizer step and per
    second, peak memory per sample) for this process's own ranks' share: one process trains
    `batch_size` samples per optimizer step (a data-parallel merge scales them by world_size)."""
    if record.step_time_s is None or not record.batch_size:
        return record
    batch = record.batch_size
    peak = peak_memory_bytes(record)
    return dataclasses.replace(
        record,
        micro_batch_size=batch // getattr(record, "grad_accum", 1),
        samples_per_optimizer_step=batch,
        samples_per_s=batch / record.step_time_s.median,
        peak_memory_per_sample_bytes=None if peak is None else peak / batch,
    )


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
