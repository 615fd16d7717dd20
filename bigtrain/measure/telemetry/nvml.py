"""The one module in bigtrain that imports `pynvml` (nvidia-ml-py), lazily, inside a function.

`NvmlDevice` owns a device handle and answers in our own types: every NVML call goes through
`_call`, the single place where NVML errors (and functions this pynvml lacks) become
`FieldUnavailable`; NOT_SUPPORTED and friends are marked permanent, so callers turn them into a null
field with a reason instead of a crash. `nvml()` initialises NVML once per process and raises
`NvmlUnavailable` (warning once) where it cannot.
"""

from __future__ import annotations

import logging
import statistics
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from bigtrain.measure.telemetry.errors import DeviceNotVisible, FieldUnavailable, NvmlUnavailable

log = logging.getLogger(__name__)

#: NVML documents the utilization sample period as "between 1 second and 1/6 second, depending on
#: the product"; when the driver's sample buffer cannot tell us, assume the slow end.
UTIL_PERIOD_WORST_CASE_S = 1.0
UTIL_PERIOD_FASTEST_S = 1.0 / 6.0

#: Output field of each GPM metric, by the pynvml constant that names it.
GPM_FIELDS = {
    "NVML_GPM_METRIC_SM_UTIL": "sm_active_pct",
    "NVML_GPM_METRIC_SM_OCCUPANCY": "sm_occupancy_pct",
    "NVML_GPM_METRIC_ANY_TENSOR_UTIL": "tensor_active_pct",
    "NVML_GPM_METRIC_DRAM_BW_UTIL": "dram_bw_util_pct",
}

#: NVML codes after which asking again is pointless.
_PERMANENT_ERRORS = (
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_ERROR_FUNCTION_NOT_FOUND",
    "NVML_ERROR_NO_PERMISSION",
    "NVML_ERROR_GPU_IS_LOST",
)

_lock = threading.Lock()
_module: Any = None
_failure: str | None = None
_warned = False
_devices: dict[object, NvmlDevice] = {}


def forget_nvml_state() -> None:
    """Drop the cached module, failure, devices and warning flag (tests swap the fake NVML in and out)."""
    global _module, _failure, _warned
    with _lock:
        _module = None
        _failure = None
        _warned = False
        _devices.clear()


def nvml() -> Any:
    """The initialised pynvml module; raises NvmlUnavailable (warning once per process)."""
    global _module, _failure, _warned
    with _lock:
        if _module is None and _failure is None:
            try:
                import pynvml  # the one import of NVML in bigtrain
            except ImportError as exc:
                _failure = f"nvidia-ml-py (pynvml) cannot be imported: {exc}"
            else:
                try:
                    pynvml.nvmlInit()
                except Exception as exc:  # NVMLError (no library, no driver) or OSError
                    _failure = f"nvmlInit failed: {_describe(exc)}"
                else:
                    _module = pynvml
        if _failure is not None:
            if not _warned:
                _warned = True
                log.warning("NVML unavailable, GPU telemetry will be null: %s", _failure)
            raise NvmlUnavailable(_failure)
        return _module


def _describe(exc: BaseException) -> str:
    """A readable message for an NVML error without trusting its __str__ (it may call NVML)."""
    try:
        text = str(exc)
    except Exception:  # pynvml's __str__ calls nvmlErrorString, which can itself fail
        text = ""
    code = getattr(exc, "value", None)
    if text and code is not None:
        return f"{text} (NVML error {code})"
    return text or f"{type(exc).__name__} (NVML error {code})"


def _call(module: Any, fn_name: str, *args: Any) -> Any:
    """Call an NVML function: the one place NVML errors (and missing functions) become ours."""
    fn = getattr(module, fn_name, None)
    if fn is None:
        raise FieldUnavailable(f"{fn_name} is not in this nvidia-ml-py", permanent=True)
    try:
        return fn(*args)
    except module.NVMLError as exc:
        permanent_codes = {getattr(module, n) for n in _PERMANENT_ERRORS if hasattr(module, n)}
        permanent = getattr(exc, "value", None) in permanent_codes
        raise FieldUnavailable(f"{fn_name}: {_describe(exc)}", permanent=permanent) from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------------------------------
# The system


def driver_version() -> str:
    """The driver version string; raises NvmlUnavailable or FieldUnavailable."""
    module = nvml()
    return _text(_call(module, "nvmlSystemGetDriverVersion"))


def cuda_driver_version() -> str:
    """The CUDA version the driver supports, as 'major.minor' (NVML encodes 12.4 as 12040)."""
    code = int(_call(nvml(), "nvmlSystemGetCudaDriverVersion"))
    return f"{code // 1000}.{(code % 1000) // 10}"


def device_count() -> int:
    """How many devices NVML sees (all of them, whatever CUDA_VISIBLE_DEVICES says)."""
    return int(_call(nvml(), "nvmlDeviceGetCount"))


# --------------------------------------------------------------------------------------------------
# One device


#: nvmlValueType_t -> the nvmlValue_t union member that holds the value.
_FIELD_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}


@dataclass(frozen=True, kw_only=True)
class GpmWindow:
    """The first GPM sample of a window, and the buffer the closing one goes into."""

    first: Any
    second: Any


class NvmlDevice:
    """One NVML device. Methods return plain numbers or raise FieldUnavailable, never NVMLError."""

    def __init__(self, module: Any, handle: Any, ref: int | str) -> None:
        self._nvml = module
        self._handle = handle
        self.ref = ref

    @classmethod
    def open(cls, ref: int | str) -> NvmlDevice:
        """The device at NVML index or UUID `ref`, cached per process; raises NvmlUnavailable or
        FieldUnavailable (no such device)."""
        module = nvml()
        if ref in _devices:
            return _devices[ref]
        lookup = "nvmlDeviceGetHandleByIndex" if isinstance(ref, int) else "nvmlDeviceGetHandleByUUID"
        device = cls(module, _call(module, lookup, ref), ref)
        _devices[ref] = device
        return device

    def _get(self, fn_name: str, *args: Any) -> Any:
        return _call(self._nvml, fn_name, self._handle, *args)

    # ---- identity (asked once)

    @cached_property
    def name(self) -> str | None:
        """The marketing name, or None where NVML cannot say."""
        try:
            return _text(self._get("nvmlDeviceGetName"))
        except FieldUnavailable:
            return None

    def uuid(self) -> str:
        """The device's UUID (GPU-...)."""
        return _text(self._get("nvmlDeviceGetUUID"))

    def memory_total_bytes(self) -> int:
        """Total device memory."""
        return int(self._get("nvmlDeviceGetMemoryInfo").total)

    def power_limit_w(self) -> float:
        """The enforced power limit, falling back to the management limit on older drivers."""
        try:
            limit_mw = self._get("nvmlDeviceGetEnforcedPowerLimit")
        except FieldUnavailable:
            limit_mw = self._get("nvmlDeviceGetPowerManagementLimit")
        return limit_mw / 1000.0

    @cached_property
    def util_sample_period(self) -> tuple[float, str]:
        """(the driver's utilization sample period in s, where that number came from), read from the
        spacing of the driver's sample buffer; the documented worst case where it cannot tell."""
        try:
            kind = self._nvml.NVML_GPU_UTILIZATION_SAMPLES
            _, samples = self._get("nvmlDeviceGetSamples", kind, 0)
            stamps_us = sorted(int(s.timeStamp) for s in samples)
        except (FieldUnavailable, AttributeError, TypeError) as exc:
            why = exc.reason if isinstance(exc, FieldUnavailable) else str(exc)
            return UTIL_PERIOD_WORST_CASE_S, f"documented worst case ({why})"
        gaps_s = [(b - a) / 1e6 for a, b in zip(stamps_us, stamps_us[1:]) if b > a]
        if len(gaps_s) < 2:
            return UTIL_PERIOD_WORST_CASE_S, "documented worst case (too few utilization samples)"
        period_s = min(max(statistics.median(gaps_s), UTIL_PERIOD_FASTEST_S), UTIL_PERIOD_WORST_CASE_S)
        return period_s, "nvmlDeviceGetSamples"

    # ---- the cheap fields the sampler polls

    def utilization_pct(self) -> float:
        return float(self._get("nvmlDeviceGetUtilizationRates").gpu)

    def memory_used_bytes(self) -> int:
        return int(self._get("nvmlDeviceGetMemoryInfo").used)

    def power_w(self) -> float:
        return self._get("nvmlDeviceGetPowerUsage") / 1000.0  # mW

    def power_instant_w(self) -> float:
        """Instantaneous board power (field NVML_FI_DEV_POWER_INSTANT), where the driver has it.

        On Hopper nvmlDeviceGetPowerUsage is documented as an average over ~1 s, so its mean over a
        short window lags the energy counter; the instantaneous field does not."""
        field_id = getattr(self._nvml, "NVML_FI_DEV_POWER_INSTANT", None)
        if field_id is None:
            raise FieldUnavailable("NVML_FI_DEV_POWER_INSTANT is not in this nvidia-ml-py", permanent=True)
        (value,) = self._get("nvmlDeviceGetFieldValues", [field_id])
        code = int(value.nvmlReturn)
        if code != getattr(self._nvml, "NVML_SUCCESS", 0):
            permanent = code == getattr(self._nvml, "NVML_ERROR_NOT_SUPPORTED", 3)
            raise FieldUnavailable(f"NVML_FI_DEV_POWER_INSTANT: NVML error {code}", permanent=permanent)
        # nvmlValue_t is a union: the valueType says which member holds the mW.
        member = _FIELD_VALUE_MEMBERS.get(int(value.valueType))
        if member is None:
            raise FieldUnavailable(f"NVML_FI_DEV_POWER_INSTANT: value type {value.valueType}", permanent=True)
        return float(getattr(value.value, member)) / 1000.0

    def sm_clock_mhz(self) -> float:
        return float(self._get("nvmlDeviceGetClockInfo", self._nvml.NVML_CLOCK_SM))

    def mem_clock_mhz(self) -> float:
        return float(self._get("nvmlDeviceGetClockInfo", self._nvml.NVML_CLOCK_MEM))

    def temperature_c(self) -> float:
        return float(self._get("nvmlDeviceGetTemperature", self._nvml.NVML_TEMPERATURE_GPU))

    def clock_event_mask(self) -> int:
        """The clock-event ("throttle") reason bits now set."""
        # The "ClocksEventReasons" name replaced "ClocksThrottleReasons" in newer drivers.
        try:
            return int(self._get("nvmlDeviceGetCurrentClocksEventReasons"))
        except FieldUnavailable as exc:
            if not exc.permanent:
                raise
            return int(self._get("nvmlDeviceGetCurrentClocksThrottleReasons"))

    # ---- the expensive ones (~4 ms a read on an H200)

    def total_energy_mj(self) -> int:
        """The total-energy counter since the driver loaded, in mJ; it moves in ~100 ms steps."""
        return int(self._get("nvmlDeviceGetTotalEnergyConsumption"))

    # ---- GPM (Hopper and newer): two samples bracket a window

    @cached_property
    def gpm_support(self) -> tuple[tuple[tuple[str, int], ...], str | None]:
        """((output field, metric id) this pynvml knows, ...), or () and why GPM cannot be used."""
        module = self._nvml
        ids = tuple(
            (field, getattr(module, const)) for const, field in GPM_FIELDS.items() if hasattr(module, const)
        )
        if not ids or not hasattr(module, "c_nvmlGpmMetricsGet_t"):
            return (), "this nvidia-ml-py has no GPM support"
        try:
            support = self._get("nvmlGpmQueryDeviceSupport")
        except FieldUnavailable as exc:
            return (), f"GPM unsupported: {exc.reason}"
        if not getattr(support, "isSupportedDevice", 0):
            return (), "GPM unsupported on this device (needs Hopper or newer)"
        return ids, None

    def gpm_open(self) -> GpmWindow:
        """Allocate both GPM buffers and take the opening sample (freed again on failure)."""
        module = self._nvml
        buffers: list[Any] = []
        try:
            buffers.append(_call(module, "nvmlGpmSampleAlloc"))
            buffers.append(_call(module, "nvmlGpmSampleAlloc"))
            self._get("nvmlGpmSampleGet", buffers[0])
        except FieldUnavailable:
            self._gpm_free(buffers)
            raise
        return GpmWindow(first=buffers[0], second=buffers[1])

    def gpm_close(self, window: GpmWindow) -> tuple[dict[str, float], dict[str, str]]:
        """Take the closing sample and compute the metrics: ({field: value}, {field: why missing}).

        Raises FieldUnavailable when the sample or the computation as a whole fails. The buffers
        are freed either way.
        """
        module = self._nvml
        metric_ids, _ = self.gpm_support
        try:
            self._get("nvmlGpmSampleGet", window.second)
            request = module.c_nvmlGpmMetricsGet_t()
            request.version = module.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = len(metric_ids)
            request.sample1 = window.first
            request.sample2 = window.second
            for i, (_, metric_id) in enumerate(metric_ids):
                request.metrics[i].metricId = metric_id
            _call(module, "nvmlGpmMetricsGet", request)
        finally:
            self._gpm_free([window.first, window.second])
        values: dict[str, float] = {}
        reasons: dict[str, str] = {}
        success = getattr(module, "NVML_SUCCESS", 0)
        for i, (field, _) in enumerate(metric_ids):
            metric = request.metrics[i]
            if metric.nvmlReturn == success:
                values[field] = float(metric.value)
            else:
                reasons[field] = f"GPM metric failed (NVML error {metric.nvmlReturn})"
        return values, reasons

    def _gpm_free(self, buffers: list[Any]) -> None:
        for buffer in buffers:
            try:
                _call(self._nvml, "nvmlGpmSampleFree", buffer)
            except FieldUnavailable:
                pass  # freeing is best effort; a leak of two small buffers is harmless


# --------------------------------------------------------------------------------------------------
# Other processes on a device (`host_load.gpu_other_processes`)


def other_compute_processes(device: str, own_pid: int) -> int | None:
    """How many compute processes other than `own_pid` run on the torch device `device`
    (`cuda[:N]`); None where NVML is unavailable or cannot list them (containers often hide
    other pids: then only the count is meaningful, which is all this returns)."""
    from bigtrain.measure.telemetry.device_ref import nvml_device_ref

    try:
        opened = NvmlDevice.open(nvml_device_ref(device))
        processes = opened._get("nvmlDeviceGetComputeRunningProcesses")
    except (NvmlUnavailable, FieldUnavailable, ValueError, DeviceNotVisible):
        return None
    return sum(1 for p in processes if getattr(p, "pid", None) != own_pid)
