"""A fake `pynvml` module for CPU tests: the import boundary of bigtrain.measure.telemetry.nvml.

It implements the calls telemetry/nvml.py makes with pynvml's names, constants and error shape
(`NVMLError` with a `.value` code), and records what it returned so tests can check aggregation
against the values actually read (and, in `thread_calls`, on which thread). Make a field
unsupported with `gpu.unsupported.add(fn_name)`; give a GPU a `TickingEnergyCounter` on a `SimClock`
to test the energy method without real time.
"""

from __future__ import annotations

import itertools
import math
import sys
import threading
import types
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

# The real codes from nvml.h / pynvml.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

_TEXT = {
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """Same shape as pynvml.NVMLError: an exception carrying the NVML return code in `.value`."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _TEXT.get(self.value, f"NVML Error with code {self.value}")


class SimClock:
    """A simulated perf_counter: time moves only when told (`sleep`, or a fake read's cost)."""

    def __init__(self, t_s: float = 100.0) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s

    def sleep(self, seconds: float) -> None:
        self.t_s += max(0.0, seconds)


@dataclass
class TickingEnergyCounter:
    """NVML's total-energy counter as the H200 shows it: it moves only every `tick_s` (~100 ms),
    to the energy used up to that tick, and each read costs `read_cost_s` of the clock (~4 ms).

    Power is `power_w` until `idle_from_s` and `idle_power_w` after it; the first tick is at
    `phase_s` (mod `tick_s`). `true_energy_j(a, b)` is what really flowed between two instants.
    """

    clock: SimClock
    power_w: float
    tick_s: float = 0.1
    phase_s: float = 0.0
    read_cost_s: float = 0.004
    idle_from_s: float = math.inf
    idle_power_w: float = 0.0
    base_mj: int = 5_000_000

    def _energy_at_j(self, t_s: float) -> float:
        busy_s = min(t_s, self.idle_from_s)
        return self.power_w * busy_s + self.idle_power_w * max(0.0, t_s - self.idle_from_s)

    def true_energy_j(self, start_s: float, end_s: float) -> float:
        return self._energy_at_j(end_s) - self._energy_at_j(start_s)

    def read_mj(self) -> int:
        """The value latched at the read's start: the energy up to the last tick; then the read's cost."""
        now_s = self.clock()
        last_tick_s = self.phase_s + math.floor((now_s - self.phase_s) / self.tick_s) * self.tick_s
        self.clock.sleep(self.read_cost_s)
        return self.base_mj + int(self._energy_at_j(last_tick_s) * 1000)


@dataclass
class FakeGpu:
    """One fake device. Value lists are cycled; every value handed out is recorded in `returned`."""

    name: str = "NVIDIA H200"
    uuid: str = "GPU-00000000-1111-2222-3333-444444444444"
    memory_total_bytes: int = 150_754_820_096
    power_limit_mw: int = 700_000
    util_pct: list[int] = field(default_factory=lambda: [90, 100, 95, 99])
    mem_used_bytes: list[int] = field(default_factory=lambda: [40 << 30, 41 << 30])
    power_mw: list[int] = field(default_factory=lambda: [500_000, 650_000, 600_000])
    #: NVML_FI_DEV_POWER_INSTANT through nvmlDeviceGetFieldValues; None: the driver lacks the
    #: field (its entry comes back NOT_SUPPORTED while the call itself succeeds, as on older drivers).
    power_instant_mw: list[int] | None = field(default_factory=lambda: [520_000, 640_000, 610_000])
    sm_clock_mhz: list[int] = field(default_factory=lambda: [1980, 1965])
    mem_clock_mhz: list[int] = field(default_factory=lambda: [2619])
    temperature_c: list[int] = field(default_factory=lambda: [55, 61, 58])
    throttle_mask: list[int] = field(default_factory=lambda: [0x0, 0x4, 0x0])
    energy_mj: int = 1_000_000_000
    #: When set, the energy counter is this ticking counter instead of the plain `energy_mj`.
    energy_counter: TickingEnergyCounter | None = None
    util_sample_stamps_us: list[int] = field(
        default_factory=lambda: [1_000_000 + 200_000 * i for i in range(20)]
    )
    gpm_supported: bool = True
    #: GPM values by metric id; a metric id not here comes back NOT_SUPPORTED.
    gpm_values: dict[int, float] = field(default_factory=lambda: {2: 83.5, 3: 41.0, 5: 37.25, 10: 22.0})
    #: pids of the compute processes NVML lists on this device
    compute_pids: list[int] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)  # fn names that raise NOT_SUPPORTED
    failing: dict[str, int] = field(default_factory=dict)  # fn name -> error code raised
    returned: dict[str, list[Any]] = field(default_factory=dict)
    _cycles: dict[str, Any] = field(default_factory=dict)

    def next_value(self, key: str) -> Any:
        if key not in self._cycles:
            self._cycles[key] = itertools.cycle(getattr(self, key))
        value = next(self._cycles[key])
        self.returned.setdefault(key, []).append(value)
        return value


class FakeNvml(types.ModuleType):
    """Install with `install(monkeypatch, FakeNvml([...]))`."""

    NVMLError = NVMLError
    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_ERROR_NOT_FOUND = NVML_ERROR_NOT_FOUND
    NVML_ERROR_TIMEOUT = NVML_ERROR_TIMEOUT
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_FUNCTION_NOT_FOUND = NVML_ERROR_FUNCTION_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    NVML_GPU_UTILIZATION_SAMPLES = 1
    NVML_GPM_METRIC_SM_UTIL = 2
    NVML_GPM_METRIC_SM_OCCUPANCY = 3
    NVML_GPM_METRIC_ANY_TENSOR_UTIL = 5
    NVML_GPM_METRIC_DRAM_BW_UTIL = 10
    NVML_GPM_METRICS_GET_VERSION = 1
    NVML_FI_DEV_POWER_INSTANT = 186

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        init_error: int | None = None,
        driver_version: str = "570.124.06",
        cuda_driver_version: int = 12080,
    ) -> None:
        super().__init__("pynvml")
        self.gpus = gpus if gpus is not None else [FakeGpu()]
        self.init_error = init_error
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self.calls: Counter[str] = Counter()
        #: calls per thread name: which thread paid for which NVML call
        self.thread_calls: dict[str, Counter[str]] = {}
        self.initialised = False

        gpm_max = 210

        class MetricsGet:  # stands in for the ctypes struct c_nvmlGpmMetricsGet_t
            def __init__(self) -> None:
                self.version = 0
                self.numMetrics = 0
                self.sample1 = None
                self.sample2 = None
                self.metrics = [
                    SimpleNamespace(metricId=0, nvmlReturn=NVML_SUCCESS, value=0.0)
                    for _ in range(gpm_max)
                ]

        self.c_nvmlGpmMetricsGet_t = MetricsGet

    # ---- plumbing

    def _enter(self, fn_name: str, handle: FakeGpu | None = None) -> None:
        self.calls[fn_name] += 1
        self.thread_calls.setdefault(threading.current_thread().name, Counter())[fn_name] += 1
        if not self.initialised and fn_name != "nvmlInit":
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if handle is not None:
            if fn_name in handle.unsupported:
                raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
            if fn_name in handle.failing:
                raise NVMLError(handle.failing[fn_name])

    # ---- system

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    # ---- devices

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        self._enter("nvmlDeviceGetHandleByUUID")
        for gpu in self.gpus:
            if gpu.uuid == uuid:
                return gpu
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        self._enter("nvmlDeviceGetName", handle)
        return handle.name

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        self._enter("nvmlDeviceGetUUID", handle)
        return handle.uuid

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> SimpleNamespace:
        self._enter("nvmlDeviceGetMemoryInfo", handle)
        used = handle.next_value("mem_used_bytes")
        return SimpleNamespace(total=handle.memory_total_bytes, used=used, free=handle.memory_total_bytes - used)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetEnforcedPowerLimit", handle)
        return handle.power_limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetPowerManagementLimit", handle)
        return handle.power_limit_mw

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[SimpleNamespace]:
        self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        return [SimpleNamespace(pid=pid, usedGpuMemory=1 << 30) for pid in handle.compute_pids]

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> SimpleNamespace:
        self._enter("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=handle.next_value("util_pct"), memory=0)

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetPowerUsage", handle)
        return handle.next_value("power_mw")

    def nvmlDeviceGetFieldValues(self, handle: FakeGpu, field_ids: list[int]) -> list[SimpleNamespace]:
        self._enter("nvmlDeviceGetFieldValues", handle)
        values = []
        for field_id in field_ids:
            if field_id == self.NVML_FI_DEV_POWER_INSTANT and handle.power_instant_mw is not None:
                values.append(SimpleNamespace(fieldId=field_id, nvmlReturn=NVML_SUCCESS, valueType=1,
                                              value=SimpleNamespace(uiVal=handle.next_value("power_instant_mw"))))
            else:
                values.append(SimpleNamespace(fieldId=field_id, nvmlReturn=NVML_ERROR_NOT_SUPPORTED,
                                              valueType=1, value=SimpleNamespace(uiVal=0)))
        return values

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetTotalEnergyConsumption", handle)
        value = handle.energy_counter.read_mj() if handle.energy_counter else handle.energy_mj
        handle.returned.setdefault("energy_mj", []).append(value)
        return value

    def nvmlDeviceGetClockInfo(self, handle: FakeGpu, clock_type: int) -> int:
        self._enter("nvmlDeviceGetClockInfo", handle)
        if clock_type == self.NVML_CLOCK_SM:
            return handle.next_value("sm_clock_mhz")
        if clock_type == self.NVML_CLOCK_MEM:
            return handle.next_value("mem_clock_mhz")
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        self._enter("nvmlDeviceGetTemperature", handle)
        return handle.next_value("temperature_c")

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetCurrentClocksEventReasons", handle)
        return handle.next_value("throttle_mask")

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeGpu) -> int:
        self._enter("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        return handle.next_value("throttle_mask")

    def nvmlDeviceGetSamples(self, handle: FakeGpu, sampling_type: int, last_seen_us: int) -> tuple[int, list]:
        self._enter("nvmlDeviceGetSamples", handle)
        samples = [
            SimpleNamespace(timeStamp=t, sampleValue=SimpleNamespace(uiVal=50))
            for t in handle.util_sample_stamps_us
            if t > last_seen_us
        ]
        return 1, samples

    # ---- GPM

    def nvmlGpmQueryDeviceSupport(self, handle: FakeGpu) -> SimpleNamespace:
        self._enter("nvmlGpmQueryDeviceSupport", handle)
        return SimpleNamespace(version=1, isSupportedDevice=int(handle.gpm_supported))

    def nvmlGpmSampleAlloc(self) -> SimpleNamespace:
        self._enter("nvmlGpmSampleAlloc")
        return SimpleNamespace(order=None, freed=False)

    def nvmlGpmSampleFree(self, sample: SimpleNamespace) -> None:
        self._enter("nvmlGpmSampleFree")
        sample.freed = True

    def nvmlGpmSampleGet(self, handle: FakeGpu, sample: SimpleNamespace) -> SimpleNamespace:
        self._enter("nvmlGpmSampleGet", handle)
        if not handle.gpm_supported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        sample.order = self.calls["nvmlGpmSampleGet"]
        sample.gpu = handle
        return sample

    def nvmlGpmMetricsGet(self, request: Any) -> Any:
        self._enter("nvmlGpmMetricsGet")
        first, second = request.sample1, request.sample2
        if first.order is None or second.order is None or second.order <= first.order:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = second.gpu
        for metric in request.metrics[: request.numMetrics]:
            if metric.metricId in gpu.gpm_values:
                metric.value = gpu.gpm_values[metric.metricId]
                metric.nvmlReturn = NVML_SUCCESS
            else:
                metric.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
        return request


def install(monkeypatch: Any, fake: types.ModuleType | None) -> None:
    """Make `import pynvml` return `fake` (None: the library is not installed) for one test."""
    from bigtrain.measure import telemetry

    monkeypatch.setitem(sys.modules, "pynvml", fake)
    telemetry._forget_nvml_state()


@pytest.fixture
def fake_nvml(monkeypatch: Any) -> Iterator[FakeNvml]:
    """A fake NVML with one H200; NVML state is forgotten before and after the test."""
    from bigtrain.measure import telemetry

    fake = FakeNvml([FakeGpu()])
    install(monkeypatch, fake)
    yield fake
    telemetry._forget_nvml_state()


@pytest.fixture
def no_nvml(monkeypatch: Any) -> Iterator[None]:
    """`import pynvml` fails, as on a machine without nvidia-ml-py."""
    from bigtrain.measure import telemetry

    install(monkeypatch, None)
    yield None
    telemetry._forget_nvml_state()
