"""Every GPU NVML sees, with the driver and CUDA versions: the GPU part of the environment
fingerprint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from bigtrain.measure.telemetry import nvml as nvml_api
from bigtrain.measure.telemetry.errors import FieldUnavailable, NvmlUnavailable

T = TypeVar("T")


def _maybe(read: Callable[[], T]) -> T | None:
    try:
        return read()
    except FieldUnavailable:
        return None


def nvml_inventory() -> dict[str, Any]:
    """Driver, CUDA driver version and every GPU NVML sees; {'gpus': [], 'nvml_reason'} without NVML."""
    try:
        nvml_api.nvml()
    except NvmlUnavailable as exc:
        return {"gpus": [], "nvml_reason": str(exc)}
    gpus = []
    for index in range(_maybe(nvml_api.device_count) or 0):
        device = _maybe(lambda: nvml_api.NvmlDevice.open(index))  # noqa: B023 - called at once
        if device is None:
            gpus.append({"index": index, "name": None, "uuid": None, "memory_total_bytes": None,
                         "power_limit_w": None})
            continue
        gpus.append({
            "index": index,
            "name": device.name,
            "uuid": _maybe(device.uuid),
            "memory_total_bytes": _maybe(device.memory_total_bytes),
            "power_limit_w": _maybe(device.power_limit_w),
        })
    return {
        "driver_version": _maybe(nvml_api.driver_version),
        "cuda_driver_version": _maybe(nvml_api.cuda_driver_version),
        "gpus": gpus,
    }
