"""Running one step-time cell of a non-torch framework (jax, tensorflow) inside its worker.

The backend (`bigtrain.frameworks.BACKENDS`) builds, compiles, warms up and times the cell in its
own framework; this module wraps that in the instruments every torch cell has, where they are
process-external or framework-free: the process's peak RSS, NVML telemetry on a GPU and the
host's load over the window. A backend whose `measure` takes `on_window_open`/`on_window_close`
keywords gets them (the RSS sampling thread stops, telemetry and the load counters open, right
before its first timed step); one that does not gets instruments around the whole call, which the
record says (`extra.window_hooks`). The measurement becomes a record in
`bigtrain.run.measured.framework_record`, exactly like a torch cell's.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from bigtrain.cells.settings import StepTimeSettings
from bigtrain.common.errors import BadInput
from bigtrain.frameworks import load_backend, missing_reason
from bigtrain.results.schema import CellRecord
from bigtrain.run.job import CellJob
from bigtrain.run.measured import framework_items, framework_record


def run_framework_cell(job: CellJob, started: str) -> CellRecord:
    """Measure `job`'s non-torch cell with its backend and return its record."""
    from bigtrain.measure.host_load import WindowLoad, usable_cores
    from bigtrain.measure.memory import PeakMemoryTracker
    from bigtrain.measure.telemetry import TelemetrySampler

    framework = job.cell.framework
    if not isinstance(job.settings, StepTimeSettings):
        raise BadInput(f"{framework} cells are measured by the step-time protocol only, "
                       f"not {job.protocol}")
    if reason := missing_reason(framework):
        raise RuntimeError(reason)  # the matrix marks such cells; a stale job still says why
    backend = load_backend(framework)
    import torch  # CPU-only use: the RSS tracker's device; CUDA is never touched here

    sampler = TelemetrySampler.for_device(job.device, interval_s=job.telemetry_interval_s)
    settings = job.settings.with_min_window(sampler.min_window_s)
    memory = PeakMemoryTracker(torch.device("cpu"))
    cores = 1 if job.device.startswith("cuda") else usable_cores()
    load = WindowLoad(cores_used=cores, device=job.device)

    def window_open() -> None:
        memory.window_open()
        sampler.start()
        load.open()

    def window_close() -> None:
        load.close()
        sampler.stop()

    hooked = _takes_window_hooks(backend)
    # The backend sees the device this worker was given (`cuda` -> the pool's `cuda:N`).
    cell = dataclasses.replace(job.cell, device=job.device)
    memory.start()
    if hooked:
        measurement = backend.measure(cell, settings, job.seed,
                                      on_window_open=window_open, on_window_close=window_close)
    else:
        window_open()
        measurement = backend.measure(cell, settings, job.seed)
        window_close()
    peak = memory.stop()
    steps = len(measurement.step_times_s)
    telemetry, telemetry_reason = sampler.result(
        window_s=sum(measurement.step_times_s), steps=steps,
        items=framework_items(job.cell.model, measurement.samples_per_step)[1] * steps)
    instruments: dict[str, Any] = {
        "peak_rss_bytes": peak.rss_bytes,
        "telemetry": telemetry,
        "telemetry_reason": telemetry_reason,
        "host_load": (hl.to_json() if (hl := load.result()) is not None else None),
        "extra": {"peak_rss_method": peak.rss_method,
                  "window_hooks": "backend" if hooked else "around the whole measure call"},
    }
    return framework_record(job, measurement, started, instruments)


def _takes_window_hooks(backend: Any) -> bool:
    parameters = inspect.signature(backend.measure).parameters
    return "on_window_open" in parameters and "on_window_close" in parameters
