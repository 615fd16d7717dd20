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


# -- framework cells (jax, tensorflow; issue 28) --------------------------------------------------
def framework_items(model: str, samples_per_step: int) -> tuple[str, int]:
    """(item unit, items per step) of a framework cell, as its torch twin counts them: a
    sequence model's items are tokens (samples x sequence length), others' are samples."""
    from bigtrain.workloads import resolve_model

    ref = resolve_model(model)
    seq_len = getattr(ref.size, "seq_len", None)
    if ref.family.item_unit == "tokens" and seq_len:
        return "tokens", samples_per_step * seq_len
    return ref.family.item_unit, samples_per_step


def framework_record(job: CellJob, measurement: Any, started: str,
                     instruments: dict[str, Any] | None = None) -> CellRecord:
    """The record of a non-torch cell from its backend's `FrameworkMeasurement`, with the same
    fields a torch cell's has (step-time statistics, throughput, memory, FLOPs and the derived
    hardware metrics), so compare, ab, report and telemetry read both alike. `instruments` holds
    what the worker measured around the backend (peak RSS, telemetry, host load, notes)."""
    import math

    from bigtrain.measure.contract import json_float
    from bigtrain.results.schema import StepTimeStats
    from bigtrain.workloads import workload_version

    given = dict(instruments or {})
    notes = given.pop("extra", {})
    times = tuple(float(t) for t in measurement.step_times_s)
    stats = StepTimeStats.from_samples(times)
    unit, items = framework_items(job.cell.model, measurement.samples_per_step)
    losses = tuple(measurement.losses)
    status, reason = "ok", None
    if any(not math.isfinite(loss) for loss in losses):
        status, reason = "diverged", f"non-finite loss in the window: {list(losses)[:3]}..."
    versions = dict(measurement.versions)
    on_gpu = job.device.startswith("cuda")
    flops, flops_source = measurement.flops_per_step, measurement.flops_source
    if flops is None:  # the framework has no count of its own: the torch twin's arithmetic
        flops = torch_twin_flops(job.cell, job.seed)
        flops_source = "torch-twin" if flops is not None else "none"
    record = base_record(
        job,
        status=status,
        reason=reason,
        started_at=started,
        ended_at=now_iso(),
        # A CPU reads as the torch cells' CPU does, so both find the same peaks and calibration.
        device_name=(versions.get("device_name") if on_gpu else None) or _cpu_name(),
        worker_pid=os.getpid(),
        item_unit=unit,
        items_per_step=items,
        param_count=measurement.param_count,
        workload_version=workload_version(job.cell.model),
        flops_per_step=flops,
        step_time_s=stats,
        step_times_s=times,
        warmup_s=measurement.warmup_s,
        window_s=sum(times),
        items_per_s=items / stats.median,
        peak_mem_allocated_bytes=measurement.peak_memory_bytes if on_gpu else None,
        loss_first=json_float(losses[0]) if losses else None,
        loss_last=json_float(losses[-1]) if losses else None,
        framework_version=versions.get(job.cell.framework),
        framework_versions={k: str(v) for k, v in versions.items()},
        flops_source=flops_source,
        framework_threads=dict(measurement.threads),
        compile_s=measurement.compile_s,
        extra=notes,
        **given,
    )
    return _with_hardware_metrics(with_lever_figures(record), job.device)


def torch_twin_flops(cell: Cell, seed: int = 0) -> float | None:
    """FLOPs of one training step of `cell`'s torch twin (the same model, so the same arithmetic),
    counted as torch cells count theirs: the twin is built on the CPU in fp32, since the count
    depends on the shapes only, and no CUDA state is touched in a framework's worker."""
    import torch

    from bigtrain.run.build import build_cell

    twin = dataclasses.replace(cell, framework="torch", device="cpu", precision="fp32",
                               compile="off")
    built = build_cell(twin, torch.device("cpu"), seed)
    return _count_flops(built.step, twin)


def _cpu_name() -> str:
    import platform

    from bigtrain.measure.envinfo import cpu_model

    return cpu_model() or platform.processor() or "CPU"
