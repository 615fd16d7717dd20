"""Hardware telemetry from NVML over a cell's measured window.

This is the only module in bigtrain that imports `pynvml` (nvidia-ml-py), and it does so lazily inside
functions, so importing it never fails on a machine without NVIDIA's library. NVML errors become our
own types here; an unsupported field is data (null plus a reason in `unsupported`), never a crash; a
machine without NVML gets one warning per process and `(None, reason)` from every sampler.

How a window is measured (see `TelemetrySampler`):

- at `start()` (right after the window's opening synchronize) the edge readings are taken: the total
  energy counter and a GPM sample; then a daemon thread starts polling utilization, memory used,
  power, SM/memory clocks, temperature and clock-event (throttle) reasons every `interval_s`;
- at `stop()` (right after the closing synchronize) the closing edge readings are taken and the
  thread is stopped;
- `result()` aggregates, and marks windows shorter than NVML can resolve as invalid instead of
  reporting numbers that mean nothing.

The energy counter is read only at the edges because one read costs ~4 ms on an H200, far more than
the other fields; the thread's reads are cheap and ctypes releases the GIL while NVML works.
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: NVML documents the utilization sample period as "between 1 second and 1/6 second, depending on
#: the product"; when the driver's sample buffer cannot tell us, assume the slow end.
UTIL_PERIOD_WORST_CASE_S = 1.0
UTIL_PERIOD_FASTEST_S = 1.0 / 6.0
#: A window must span this many utilization sample periods (and at least MIN_WINDOW_FLOOR_S).
MIN_WINDOW_PERIODS = 5
MIN_WINDOW_FLOOR_S = 1.0

CPU_REASON = "no NVML telemetry on the CPU"

#: Output field of each GPM metric, by the pynvml constant that names it.
GPM_FIELDS = {
    "NVML_GPM_METRIC_SM_UTIL": "sm_active_pct",
    "NVML_GPM_METRIC_SM_OCCUPANCY": "sm_occupancy_pct",
    "NVML_GPM_METRIC_ANY_TENSOR_UTIL": "tensor_active_pct",
    "NVML_GPM_METRIC_DRAM_BW_UTIL": "dram_bw_util_pct",
}

#: Clock-event ("throttle") reason bits, from nvml.h's nvmlClocksEventReason* constants.
CLOCK_EVENT_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}

#: Sampled fields: name in a TelemetrySample -> the output fields that depend on it.
SAMPLED_OUTPUTS = {
    "util_pct": ("util_mean_pct", "util_max_pct"),
    "mem_used_bytes": ("mem_used_max_bytes",),
    "power_w": ("power_mean_w", "power_max_w"),
    "sm_clock_mhz": ("sm_clock_mean_mhz",),
    "mem_clock_mhz": ("mem_clock_mean_mhz",),
    "temperature_c": ("temperature_max_c",),
    "throttle_mask": ("throttle_reasons_seen",),
}
ENERGY_OUTPUTS = ("energy_j", "joules_per_step", "items_per_j", "power_from_energy_w")


# --------------------------------------------------------------------------------------------------
# Our own error types


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


# --------------------------------------------------------------------------------------------------
# The NVML module, initialised once per process

_nvml_lock = threading.Lock()
_nvml_module: Any = None
_nvml_failure: str | None = None
_warned = False
_device_cache: dict[object, _DeviceInfo] = {}


def _forget_nvml_state() -> None:
    """Drop the cached module, failure and warning flag (tests swap the fake NVML in and out)."""
    global _nvml_module, _nvml_failure, _warned
    with _nvml_lock:
        _nvml_module = None
        _nvml_failure = None
        _warned = False
        _device_cache.clear()


def _nvml() -> Any:
    """The initialised pynvml module; raises NvmlUnavailable (warning once per process)."""
    global _nvml_module, _nvml_failure, _warned
    with _nvml_lock:
        if _nvml_module is None and _nvml_failure is None:
            try:
                import pynvml  # the one import of NVML in bigtrain
            except ImportError as exc:
                _nvml_failure = f"nvidia-ml-py (pynvml) cannot be imported: {exc}"
            else:
                try:
                    pynvml.nvmlInit()
                except Exception as exc:  # NVMLError (no library, no driver) or OSError
                    _nvml_failure = f"nvmlInit failed: {_describe(exc)}"
                else:
                    _nvml_module = pynvml
        if _nvml_failure is not None:
            if not _warned:
                _warned = True
                log.warning("NVML unavailable, GPU telemetry will be null: %s", _nvml_failure)
            raise NvmlUnavailable(_nvml_failure)
        return _nvml_module


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


def _permanent_codes(nvml: Any) -> set[int]:
    names = (
        "NVML_ERROR_NOT_SUPPORTED",
        "NVML_ERROR_FUNCTION_NOT_FOUND",
        "NVML_ERROR_NO_PERMISSION",
        "NVML_ERROR_GPU_IS_LOST",
    )
    return {getattr(nvml, n) for n in names if hasattr(nvml, n)}


def _call(nvml: Any, fn_name: str, *args: Any) -> Any:
    """Call an NVML function, translating its errors (and its absence) into FieldUnavailable."""
    fn = getattr(nvml, fn_name, None)
    if fn is None:
        raise FieldUnavailable(f"{fn_name} is not in this nvidia-ml-py", permanent=True)
    try:
        return fn(*args)
    except nvml.NVMLError as exc:
        permanent = getattr(exc, "value", None) in _permanent_codes(nvml)
        raise FieldUnavailable(f"{fn_name}: {_describe(exc)}", permanent=permanent) from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------------------------------
# Which NVML device a torch device is


def nvml_device_ref(device: str) -> int | str:
    """The NVML index (or UUID) of a `cuda` / `cuda:N` device, mapped through CUDA_VISIBLE_DEVICES.

    CUDA numbers only the visible devices; NVML numbers every device. With CUDA_VISIBLE_DEVICES=2,3,
    `cuda:1` is NVML index 3. Entries given as UUIDs (GPU-..., MIG-...) are returned as UUIDs.
    CUDA_DEVICE_ORDER=FASTEST_FIRST (CUDA's default) can order devices differently from NVML's PCI
    order on mixed machines; set CUDA_DEVICE_ORDER=PCI_BUS_ID there.
    """
    match = re.fullmatch(r"cuda(?::(\d+))?", device.strip())
    if match is None:
        raise ValueError(f"not a CUDA device: {device!r} (expected 'cuda' or 'cuda:N')")
    ordinal = int(match.group(1) or 0)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return ordinal
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if ordinal >= len(entries):
        raise DeviceNotVisible(
            f"{device} is not visible: CUDA_VISIBLE_DEVICES={visible!r} lists {len(entries)} device(s)"
        )
    entry = entries[ordinal]
    if entry.isdigit():
        return int(entry)
    return entry


@dataclass(frozen=True)
class _DeviceInfo:
    """What we learn about one NVML device once per process."""

    nvml: Any  # the pynvml module this handle belongs to
    handle: Any
    ref: int | str
    name: str | None
    util_period_s: float
    util_period_source: str
    gpm_metric_ids: tuple[tuple[str, int], ...]  # (output field, metric id)
    gpm_reason: str | None  # why GPM cannot be used, or None


def _open_device(ref: int | str) -> _DeviceInfo:
    """Look up (and cache) a device; raises NvmlUnavailable or FieldUnavailable."""
    nvml = _nvml()
    if ref in _device_cache:
        return _device_cache[ref]
    if isinstance(ref, int):
        handle = _call(nvml, "nvmlDeviceGetHandleByIndex", ref)
    else:
        handle = _call(nvml, "nvmlDeviceGetHandleByUUID", ref)
    try:
        name: str | None = _text(_call(nvml, "nvmlDeviceGetName", handle))
    except FieldUnavailable:
        name = None
    period_s, period_source = _util_sample_period(nvml, handle)
    metric_ids, gpm_reason = _gpm_support(nvml, handle)
    info = _DeviceInfo(nvml, handle, ref, name, period_s, period_source, metric_ids, gpm_reason)
    _device_cache[ref] = info
    return info


def _util_sample_period(nvml: Any, handle: Any) -> tuple[float, str]:
    """The driver's utilization sample period, read from the spacing of its sample buffer."""
    try:
        _, samples = _call(nvml, "nvmlDeviceGetSamples", handle, nvml.NVML_GPU_UTILIZATION_SAMPLES, 0)
        stamps_us = sorted(int(s.timeStamp) for s in samples)
    except (FieldUnavailable, AttributeError, TypeError) as exc:
        why = exc.reason if isinstance(exc, FieldUnavailable) else str(exc)
        return UTIL_PERIOD_WORST_CASE_S, f"documented worst case ({why})"
    gaps_s = [(b - a) / 1e6 for a, b in zip(stamps_us, stamps_us[1:]) if b > a]
    if len(gaps_s) < 2:
        return UTIL_PERIOD_WORST_CASE_S, "documented worst case (too few utilization samples)"
    period_s = min(max(statistics.median(gaps_s), UTIL_PERIOD_FASTEST_S), UTIL_PERIOD_WORST_CASE_S)
    return period_s, "nvmlDeviceGetSamples"


def _gpm_support(nvml: Any, handle: Any) -> tuple[tuple[tuple[str, int], ...], str | None]:
    """GPM metric ids this pynvml knows, or why GPM cannot be used on this device."""
    ids = tuple(
        (field, getattr(nvml, const)) for const, field in GPM_FIELDS.items() if hasattr(nvml, const)
    )
    if not ids or not hasattr(nvml, "c_nvmlGpmMetricsGet_t"):
        return (), "this nvidia-ml-py has no GPM support"
    try:
        support = _call(nvml, "nvmlGpmQueryDeviceSupport", handle)
    except FieldUnavailable as exc:
        return (), f"GPM unsupported: {exc.reason}"
    if not getattr(support, "isSupportedDevice", 0):
        return (), "GPM unsupported on this device (needs Hopper or newer)"
    return ids, None


def min_window_for(util_period_s: float) -> float:
    """The shortest window NVML can resolve: 5 utilization sample periods, and at least 1 s."""
    return max(MIN_WINDOW_FLOOR_S, MIN_WINDOW_PERIODS * util_period_s)


# --------------------------------------------------------------------------------------------------
# Sampling


@dataclass(frozen=True)
class TelemetrySample:
    """One poll of the cheap NVML fields; None where the read failed."""

    t_s: float
    util_pct: float | None = None
    mem_used_bytes: int | None = None
    power_w: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    temperature_c: float | None = None
    throttle_mask: int | None = None


class TelemetrySampler:
    """Samples NVML over one measured window; see the module docstring for the protocol.

    Build with `for_device`; call `start()` after the opening synchronize, `stop()` after the
    closing one, then `result(window_s, steps, items)`.
    """

    def __init__(
        self, *, device: str, interval_s: float, info: _DeviceInfo | None, reason: str | None
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self.device = device
        self.interval_s = float(interval_s)
        self._info = info
        self._reason = reason
        self._state = "new"
        self._reset()

    @classmethod
    def for_device(cls, device: str, interval_s: float = 0.1) -> TelemetrySampler:
        """A sampler for 'cpu' or 'cuda[:N]'; never raises for a missing or broken NVML."""
        device = device.strip()
        if device == "cpu":
            return cls(device=device, interval_s=interval_s, info=None, reason=CPU_REASON)
        if not device.startswith("cuda"):
            reason = f"no NVML telemetry for device {device!r} (only cuda devices have it)"
            return cls(device=device, interval_s=interval_s, info=None, reason=reason)
        try:
            ref = nvml_device_ref(device)  # a malformed device string is a programming error
        except DeviceNotVisible as exc:
            return cls(device=device, interval_s=interval_s, info=None, reason=f"NVML unavailable: {exc}")
        try:
            info = _open_device(ref)
        except NvmlUnavailable as exc:
            return cls(device=device, interval_s=interval_s, info=None, reason=f"NVML unavailable: {exc}")
        except FieldUnavailable as exc:
            reason = f"NVML unavailable: no NVML device {ref!r} for {device}: {exc.reason}"
            return cls(device=device, interval_s=interval_s, info=None, reason=reason)
        return cls(device=device, interval_s=interval_s, info=info, reason=None)

    @property
    def available(self) -> bool:
        """True when this sampler will produce telemetry."""
        return self._info is not None

    @property
    def unavailable_reason(self) -> str | None:
        """Why there will be no telemetry, or None."""
        return self._reason

    @property
    def min_window_s(self) -> float:
        """The shortest window NVML can resolve here; 0 where there is no telemetry."""
        if self._info is None:
            return 0.0
        return min_window_for(self._info.util_period_s)

    # ---- the window

    def _reset(self) -> None:
        self._samples: list[TelemetrySample] = []
        self._field_reasons: dict[str, str] = {}  # sampled field -> why it is missing for good
        self._transient_errors = 0
        self._thread_error: str | None = None
        self._energy_start_mj: int | None = None
        self._energy_end_mj: int | None = None
        self._energy_start_t: float | None = None
        self._energy_end_t: float | None = None
        self._energy_reason: str | None = None
        self._gpm_samples: tuple[Any, Any] | None = None
        self._gpm_values: dict[str, float | None] = {}
        self._gpm_reasons: dict[str, str] = {}
        self._t0 = 0.0
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open the window: edge readings (energy, GPM), then start the polling thread."""
        if self._state == "running":
            raise RuntimeError("TelemetrySampler.start() called twice without stop()")
        self._reset()
        self._state = "running"
        if self._info is None:
            return
        nvml = self._info.nvml
        self._t0 = time.perf_counter()
        self._energy_start_mj, self._energy_start_t = self._read_energy(nvml)
        self._gpm_open(nvml)
        self._thread = threading.Thread(target=self._poll, name="bigtrain-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the window: closing edge readings first (they bound the window), then the thread."""
        if self._state != "running":
            raise RuntimeError("TelemetrySampler.stop() called without start()")
        self._state = "stopped"
        if self._info is None:
            return
        nvml = self._info.nvml
        if self._energy_start_mj is not None:
            self._energy_end_mj, self._energy_end_t = self._read_energy(nvml)
        self._gpm_close(nvml)
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _read_energy(self, nvml: Any) -> tuple[int | None, float | None]:
        try:
            value_mj = int(_call(nvml, "nvmlDeviceGetTotalEnergyConsumption", self._info.handle))
        except FieldUnavailable as exc:
            self._energy_reason = exc.reason
            return None, None
        return value_mj, time.perf_counter()

    def _gpm_open(self, nvml: Any) -> None:
        info = self._info
        if info.gpm_reason is not None:
            return
        try:
            first = _call(nvml, "nvmlGpmSampleAlloc")
            second = _call(nvml, "nvmlGpmSampleAlloc")
            self._gpm_samples = (first, second)
            _call(nvml, "nvmlGpmSampleGet", info.handle, first)
        except FieldUnavailable as exc:
            self._gpm_fail(nvml, f"GPM sample failed: {exc.reason}")

    def _gpm_close(self, nvml: Any) -> None:
        info = self._info
        if info.gpm_reason is not None or self._gpm_samples is None:
            return
        first, second = self._gpm_samples
        try:
            _call(nvml, "nvmlGpmSampleGet", info.handle, second)
            request = nvml.c_nvmlGpmMetricsGet_t()
            request.version = nvml.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = len(info.gpm_metric_ids)
            request.sample1 = first
            request.sample2 = second
            for i, (_, metric_id) in enumerate(info.gpm_metric_ids):
                request.metrics[i].metricId = metric_id
            _call(nvml, "nvmlGpmMetricsGet", request)
        except FieldUnavailable as exc:
            self._gpm_fail(nvml, f"GPM metrics failed: {exc.reason}")
            return
        success = getattr(nvml, "NVML_SUCCESS", 0)
        for i, (field, _) in enumerate(info.gpm_metric_ids):
            metric = request.metrics[i]
            if metric.nvmlReturn == success:
                self._gpm_values[field] = float(metric.value)
            else:
                self._gpm_reasons[field] = f"GPM metric failed (NVML error {metric.nvmlReturn})"
        self._gpm_free(nvml)

    def _gpm_fail(self, nvml: Any, reason: str) -> None:
        for field, _ in self._info.gpm_metric_ids:
            self._gpm_reasons[field] = reason
        self._gpm_free(nvml)

    def _gpm_free(self, nvml: Any) -> None:
        if self._gpm_samples is None:
            return
        for sample in self._gpm_samples:
            try:
                _call(nvml, "nvmlGpmSampleFree", sample)
            except FieldUnavailable:
                pass  # freeing is best effort; a leak of two small buffers is harmless
        self._gpm_samples = None

    def _poll(self) -> None:
        """The thread: one sample now, then one every interval_s until stopped."""
        nvml = self._info.nvml
        next_t = time.perf_counter()
        while True:
            try:
                self._samples.append(self._take_sample(nvml))
            except Exception as exc:  # a bug or a broken binding: keep what we have, say why
                self._thread_error = f"{type(exc).__name__}: {exc}"
                return
            next_t += self.interval_s
            delay = next_t - time.perf_counter()
            if delay < 0:  # a slow read: skip the missed ticks rather than burst to catch up
                next_t = time.perf_counter()
                delay = 0.0
            if self._stop_event.wait(delay):
                return

    def _take_sample(self, nvml: Any) -> TelemetrySample:
        handle = self._info.handle
        readers: dict[str, Callable[[], Any]] = {
            "util_pct": lambda: float(_call(nvml, "nvmlDeviceGetUtilizationRates", handle).gpu),
            "mem_used_bytes": lambda: int(_call(nvml, "nvmlDeviceGetMemoryInfo", handle).used),
            "power_w": lambda: _call(nvml, "nvmlDeviceGetPowerUsage", handle) / 1000.0,  # mW
            "sm_clock_mhz": lambda: float(_call(nvml, "nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_SM)),
            "mem_clock_mhz": lambda: float(
                _call(nvml, "nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_MEM)
            ),
            "temperature_c": lambda: float(
                _call(nvml, "nvmlDeviceGetTemperature", handle, nvml.NVML_TEMPERATURE_GPU)
            ),
            "throttle_mask": lambda: int(self._clock_event_reasons(nvml, handle)),
        }
        values: dict[str, Any] = {"t_s": time.perf_counter() - self._t0}
        for field, read in readers.items():
            if field in self._field_reasons:
                continue  # known unsupported: do not pay for asking again
            try:
                values[field] = read()
            except FieldUnavailable as exc:
                if exc.permanent:
                    self._field_reasons[field] = exc.reason
                else:
                    self._transient_errors += 1
        return TelemetrySample(**values)

    @staticmethod
    def _clock_event_reasons(nvml: Any, handle: Any) -> int:
        # The "ClocksEventReasons" name replaced "ClocksThrottleReasons" in newer drivers.
        try:
            return _call(nvml, "nvmlDeviceGetCurrentClocksEventReasons", handle)
        except FieldUnavailable as exc:
            if not exc.permanent:
                raise
            return _call(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", handle)

    # ---- the result

    def result(self, window_s: float, steps: int, items: int) -> tuple[dict[str, Any] | None, str | None]:
        """(telemetry dict, None), or (None, reason) where there is no telemetry at all."""
        if self._info is None:
            return None, self._reason
        if self._state != "stopped":
            raise RuntimeError("TelemetrySampler.result() needs start() and stop() first")
        energy_j = None
        energy_window_s = None
        energy_reason = self._energy_reason
        if self._energy_start_mj is not None and self._energy_end_mj is not None:
            if self._energy_end_mj >= self._energy_start_mj:
                energy_j = (self._energy_end_mj - self._energy_start_mj) / 1000.0
                energy_window_s = self._energy_end_t - self._energy_start_t
            else:  # the counter restarts when the driver reloads
                energy_reason = "the total-energy counter went backwards during the window"
        return (
            aggregate(
                self._samples,
                field_reasons=self._field_reasons,
                window_s=window_s,
                min_window_s=self.min_window_s,
                steps=steps,
                items=items,
                energy_j=energy_j,
                energy_window_s=energy_window_s,
                energy_reason=energy_reason,
                gpm_values=self._gpm_values,
                gpm_reasons={**self._gpm_reasons, **self._gpm_unsupported()},
                interval_s=self.interval_s,
                extra={
                    "gpu_name": self._info.name,
                    "nvml_device": self._info.ref,
                    "util_sample_period_s": self._info.util_period_s,
                    "util_sample_period_source": self._info.util_period_source,
                    "transient_read_errors": self._transient_errors,
                    "sampler_error": self._thread_error,
                },
            ),
            None,
        )

    def _gpm_unsupported(self) -> dict[str, str]:
        if self._info.gpm_reason is None:
            return {}
        return {field: self._info.gpm_reason for field in GPM_FIELDS.values()}


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def throttle_names(mask: int) -> list[str]:
    """The names of the clock-event reason bits set in `mask` (unknown bits as hex)."""
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.append(f"unknown_0x{unknown:x}")
    return names


def aggregate(
    samples: Sequence[TelemetrySample],
    *,
    field_reasons: dict[str, str],
    window_s: float,
    min_window_s: float,
    steps: int,
    items: int,
    energy_j: float | None,
    energy_window_s: float | None,
    energy_reason: str | None,
    gpm_values: dict[str, float | None],
    gpm_reasons: dict[str, str],
    interval_s: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Summarise a window's samples and edge readings into the telemetry dict (pure function).

    A null field always has its reason in `unsupported`.
    """
    unsupported: dict[str, str] = {}

    def series(field: str) -> list[Any]:
        return [getattr(s, field) for s in samples if getattr(s, field) is not None]

    def missing(field: str) -> str:
        if field in field_reasons:
            return field_reasons[field]
        return "no samples in the window" if not samples else "every read failed"

    out: dict[str, Any] = {}
    util = series("util_pct")
    mem = series("mem_used_bytes")
    power = series("power_w")
    sm_clock = series("sm_clock_mhz")
    mem_clock = series("mem_clock_mhz")
    temperature = series("temperature_c")
    masks = series("throttle_mask")
    out["util_mean_pct"] = _mean(util)
    out["util_max_pct"] = max(util) if util else None
    for field in GPM_FIELDS.values():
        out[field] = gpm_values.get(field)
        if out[field] is None:
            unsupported[field] = gpm_reasons.get(field, "GPM not sampled")
    out["mem_used_max_bytes"] = max(mem) if mem else None
    out["power_mean_w"] = _mean(power)
    out["power_max_w"] = max(power) if power else None
    out["energy_j"] = energy_j
    out["energy_window_s"] = energy_window_s
    # Power from the energy counter is the better mean: the power reading is itself averaged over
    # ~1 s on recent GPUs, so its samples lag the window.
    out["power_from_energy_w"] = energy_j / energy_window_s if energy_j is not None and energy_window_s else None
    out["joules_per_step"] = energy_j / steps if energy_j is not None and steps > 0 else None
    out["items_per_j"] = items / energy_j if energy_j else None
    out["sm_clock_mean_mhz"] = _mean(sm_clock)
    out["mem_clock_mean_mhz"] = _mean(mem_clock)
    out["temperature_max_c"] = max(temperature) if temperature else None
    seen = 0
    for mask in masks:
        seen |= mask
    out["throttle_reasons_seen"] = throttle_names(seen) if masks else None
    for sampled, outputs in SAMPLED_OUTPUTS.items():
        for field in outputs:
            if out[field] is None:
                unsupported[field] = missing(sampled)
    for field in ENERGY_OUTPUTS:
        if out[field] is None:
            if energy_j is None:
                unsupported[field] = energy_reason or "energy counter not read"
            else:
                unsupported[field] = "zero steps, items or energy in the window"
    out["samples"] = len(samples)
    out["interval_s"] = interval_s
    out["window_s"] = window_s
    out["min_window_s"] = min_window_s
    if window_s < min_window_s:
        out["valid"] = False
        out["invalid_reason"] = (
            f"window_too_short: {window_s:.3f} s is shorter than the {min_window_s:.3f} s NVML "
            f"can resolve here ({MIN_WINDOW_PERIODS} utilization sample periods, at least "
            f"{MIN_WINDOW_FLOOR_S:g} s); lengthen the measured window"
        )
    else:
        out["valid"] = True
        out["invalid_reason"] = None
    out["unsupported"] = dict(sorted(unsupported.items()))
    out["timeline"] = {
        "t_s": [round(s.t_s, 4) for s in samples],
        "util_pct": [s.util_pct for s in samples],
        "power_w": [s.power_w for s in samples],
        "sm_clock_mhz": [s.sm_clock_mhz for s in samples],
    }
    if extra:
        out.update(extra)
    return out


# --------------------------------------------------------------------------------------------------
# Inventory for the environment fingerprint


def nvml_inventory() -> dict[str, Any]:
    """Driver, CUDA driver version and every GPU NVML sees; {'gpus': [], 'nvml_reason'} without NVML."""
    try:
        nvml = _nvml()
    except NvmlUnavailable as exc:
        return {"gpus": [], "nvml_reason": str(exc)}

    def maybe(fn_name: str, *args: Any) -> Any:
        try:
            return _call(nvml, fn_name, *args)
        except FieldUnavailable:
            return None

    driver = maybe("nvmlSystemGetDriverVersion")
    cuda = maybe("nvmlSystemGetCudaDriverVersion")
    count = maybe("nvmlDeviceGetCount") or 0
    gpus = []
    for index in range(count):
        handle = maybe("nvmlDeviceGetHandleByIndex", index)
        if handle is None:
            gpus.append({"index": index, "name": None, "uuid": None, "memory_total_bytes": None,
                         "power_limit_w": None})
            continue
        name = maybe("nvmlDeviceGetName", handle)
        uuid = maybe("nvmlDeviceGetUUID", handle)
        memory = maybe("nvmlDeviceGetMemoryInfo", handle)
        limit_mw = maybe("nvmlDeviceGetEnforcedPowerLimit", handle)
        if limit_mw is None:
            limit_mw = maybe("nvmlDeviceGetPowerManagementLimit", handle)
        gpus.append(
            {
                "index": index,
                "name": _text(name) if name is not None else None,
                "uuid": _text(uuid) if uuid is not None else None,
                "memory_total_bytes": int(memory.total) if memory is not None else None,
                "power_limit_w": limit_mw / 1000.0 if limit_mw is not None else None,
            }
        )
    return {
        "driver_version": _text(driver) if driver is not None else None,
        # NVML encodes CUDA 12.4 as 12040.
        "cuda_driver_version": f"{cuda // 1000}.{(cuda % 1000) // 10}" if isinstance(cuda, int) else None,
        "gpus": gpus,
    }
