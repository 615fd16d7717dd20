"""Hardware telemetry from NVML over a cell's measured window.

- `nvml.py`: the only module in bigtrain that imports `pynvml`, lazily, so importing this package
  never fails (nor loads NVML) on a machine without NVIDIA's library; `NvmlDevice` turns NVML's
  errors into ours (`errors.py`): an unsupported field is null plus a reason, never a crash;
- `sampler.py`: `TelemetrySampler`, the window protocol the step loop uses;
- `energy.py`: energy over the window, aligned to the energy counter's steps;
- `aggregate.py`: the pure summary of a window into the record's `telemetry` dict;
- `inventory.py`: the GPU list for the environment fingerprint;
- `device_ref.py`: which NVML device a `cuda:N` is.
"""

from __future__ import annotations

from bigtrain.measure.telemetry.aggregate import (
    GpmResult,
    SamplerFacts,
    TelemetrySample,
    WindowReadings,
    WindowTelemetry,
    WindowWork,
    min_window_for,
    summarise_window,
    throttle_names,
)
from bigtrain.measure.telemetry.device_ref import nvml_device_ref
from bigtrain.measure.telemetry.energy import EDGE_READS, TICK_ALIGNED, EnergyEstimate
from bigtrain.measure.telemetry.errors import (
    DeviceNotVisible,
    FieldUnavailable,
    NvmlUnavailable,
    TelemetryError,
)
from bigtrain.measure.telemetry.inventory import nvml_inventory
from bigtrain.measure.telemetry.nvml import forget_nvml_state as _forget_nvml_state
from bigtrain.measure.telemetry.sampler import CPU_REASON, TelemetrySampler

__all__ = [
    "CPU_REASON", "EDGE_READS", "TICK_ALIGNED", "DeviceNotVisible", "EnergyEstimate", "FieldUnavailable",
    "GpmResult", "NvmlUnavailable", "SamplerFacts", "TelemetryError", "TelemetrySample",
    "TelemetrySampler", "WindowReadings", "WindowTelemetry", "WindowWork", "min_window_for",
    "nvml_device_ref", "nvml_inventory", "summarise_window", "throttle_names",
]
