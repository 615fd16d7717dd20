"""Our own error types for what NVML could not give us (nothing here imports pynvml)."""

from __future__ import annotations


class TelemetryError(Exception):
    """Something NVML could not give us."""


class NvmlUnavailable(TelemetryError):
    """NVML as a whole cannot be used: not installed, no driver, init failed."""


class DeviceNotVisible(ValueError):
    """A `cuda:N` that CUDA_VISIBLE_DEVICES does not make visible."""


class FieldUnavailable(TelemetryError):
    """One NVML query failed; `permanent` means asking again is pointless (not supported)."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
