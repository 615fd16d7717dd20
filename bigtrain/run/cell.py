"""Running one cell inside a worker: build, warm up, measure, and turn the outcome into a record.

Exceptions become records here (oom, error, diverged) so that the worker can report them; deaths
by signal, hangs and silent exits are detected by the executor. Every record not built by the
measurement itself comes from `bigtrain.run.records`.
"""

from __future__ import annotations

import os
from typing import Any

from bigtrain.measure.protocols import CellSkipped
from bigtrain.results.schema import CellRecord
from bigtrain.run.job import CellJob
from bigtrain.run.measured import build_record
from bigtrain.run.records import base_record, exception_record, json_clean, now_iso


def run_cell(job: CellJob) -> CellRecord:
    """Run one cell end to end and return its record; never raises for a cell's own failure.

    The record is JSON-clean (`json_clean`): a workload whose `notes` put something JSON cannot
    hold into `extra` gets an `error` record naming the key, never a crash of the worker or the
    sweep."""
    started = now_iso()
    try:
        if getattr(job.cell, "framework", "torch") != "torch":  # jax, tensorflow: its backend
            from bigtrain.run.framework_cell import run_framework_cell

            return json_clean(job, run_framework_cell(job, started), started)
        if job.cell.world_size > 1:  # N DDP ranks, spawned and watched from here
            from bigtrain.run.distributed import run_distributed_cell

            return json_clean(job, run_distributed_cell(job), started)
        return json_clean(job, _measure(job, started), started)
    except CellSkipped as exc:  # found out only when building (a CUDA graph that cannot capture)
        return base_record(job, status="skipped", reason=str(exc), started_at=started,
                           ended_at=now_iso(), worker_pid=os.getpid())
    except Exception as exc:  # the cell failed; the record says how
        return exception_record(job, exc, started_at=started, worker_pid=os.getpid())


def _measure(job: CellJob, started: str) -> CellRecord:
    """Build the cell, run its protocol, and turn both into a record."""
    from bigtrain.measure.memory import PeakMemoryTracker
    from bigtrain.measure.contract import Instruments
    from bigtrain.measure.protocols import resolve_protocol
    from bigtrain.run.build import build_cell, select_device

    protocol = resolve_protocol(job.protocol)
    device = select_device(job.device)
    fraction = getattr(job, "cuda_memory_fraction", None)
    if fraction is not None and device.type == "cuda":
        import torch

        # Before the build, so the cap holds for every allocation of the cell (`bigbench fit`).
        torch.cuda.set_per_process_memory_fraction(fraction, device)
    # Peak memory covers the build too (parameters, optimizer state): start it first.
    memory = PeakMemoryTracker(device)
    memory.start()
    built = build_cell(job.cell, device, job.seed)
    result = protocol.run(built, job.settings,
                          Instruments(memory=memory, sampler=_telemetry_sampler(job),
                                      profile=getattr(job, "profile", None)))
    return build_record(job, built, result, started)


def _telemetry_sampler(job: CellJob) -> Any:
    from bigtrain.measure.telemetry import TelemetrySampler

    return TelemetrySampler.for_device(job.device, interval_s=job.telemetry_interval_s)
