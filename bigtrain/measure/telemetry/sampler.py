"""`TelemetrySampler`: NVML over one measured window, on a daemon thread beside the step loop.

- `start()` (right after the window's opening synchronize, before its clock starts) reads the
  opening edges on the calling thread: the total-energy counter and a GPM sample; then a daemon
  thread starts polling utilization, memory used, power, SM/memory clocks, temperature and
  clock-event (throttle) reasons every `interval_s`. Between those polls it also times the energy
  counter's steps (`energy.TickTracker`): fast reads until two steps (~0.2 s), then a few reads
  around the steps 2, 4, 8, ... periods later;
- `stop()` (right after the closing synchronize) reads the closing edges, stops the thread, and
  then, the window being over, polls the energy counter until its next step (about 0.1 s);
- `result()` aggregates (`aggregate.py`) and marks windows shorter than NVML can resolve as
  invalid instead of reporting numbers that mean nothing.

Nothing is added to the measuring thread inside the window: its reads are at the edges, as
before; the thread's reads release the GIL while NVML works (ctypes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from bigtrain.measure.telemetry import energy as energy_counter
from bigtrain.measure.telemetry.aggregate import (
    GpmResult,
    SamplerFacts,
    TelemetrySample,
    WindowReadings,
    WindowWork,
    min_window_for,
    summarise_window,
)
from bigtrain.measure.telemetry.device_ref import nvml_device_ref
from bigtrain.measure.telemetry.energy import CounterTick, EnergyEstimate, EnergyRead, TickTracker
from bigtrain.measure.telemetry.errors import DeviceNotVisible, FieldUnavailable, NvmlUnavailable
from bigtrain.measure.telemetry.nvml import GPM_FIELDS, GpmWindow, NvmlDevice

CPU_REASON = "no NVML telemetry on the CPU"


class TelemetrySampler:
    """Samples NVML over one measured window; see the module docstring for the protocol.

    Build with `for_device`; call `start()` after the opening synchronize, `stop()` after the
    closing one, then `result(window_s, steps, items)`.
    """

    def __init__(
        self,
        *,
        device: str,
        interval_s: float,
        nvml_device: NvmlDevice | None,
        reason: str | None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self.device = device
        self.interval_s = float(interval_s)
        self._nvml_device = nvml_device
        self._reason = reason
        self._clock = time.perf_counter
        self._state = "new"
        self._reset()

    @classmethod
    def for_device(cls, device: str, interval_s: float = 0.1) -> TelemetrySampler:
        """A sampler for 'cpu' or 'cuda[:N]'; never raises for a missing or broken NVML."""
        device = device.strip()

        def without(reason: str) -> TelemetrySampler:
            return cls(device=device, interval_s=interval_s, nvml_device=None, reason=reason)

        if device == "cpu":
            return without(CPU_REASON)
        if not device.startswith("cuda"):
            return without(f"no NVML telemetry for device {device!r} (only cuda devices have it)")
        try:
            ref = nvml_device_ref(device)  # a malformed device string is a programming error
        except DeviceNotVisible as exc:
            return without(f"NVML unavailable: {exc}")
        try:
            opened = NvmlDevice.open(ref)
        except NvmlUnavailable as exc:
            return without(f"NVML unavailable: {exc}")
        except FieldUnavailable as exc:
            return without(f"NVML unavailable: no NVML device {ref!r} for {device}: {exc.reason}")
        return cls(device=device, interval_s=interval_s, nvml_device=opened, reason=None)

    @property
    def available(self) -> bool:
        """True when this sampler will produce telemetry."""
        return self._nvml_device is not None

    @property
    def unavailable_reason(self) -> str | None:
        """Why there will be no telemetry, or None."""
        return self._reason

    @property
    def min_window_s(self) -> float:
        """The shortest window NVML can resolve here; 0 where there is no telemetry."""
        if self._nvml_device is None:
            return 0.0
        return min_window_for(self._nvml_device.util_sample_period[0])

    # ---- the window

    def _reset(self) -> None:
        self._samples: list[TelemetrySample] = []
        self._field_reasons: dict[str, str] = {}  # sampled field -> why it is missing for good
        self._transient_errors = 0
        self._thread_error: str | None = None
        self._energy_start: EnergyRead | None = None
        self._energy_end: EnergyRead | None = None
        self._energy_reason: str | None = None
        self._ticks: TickTracker | None = None
        self._closing_tick: CounterTick | None = None
        self._gpm_window: GpmWindow | None = None
        self._gpm = GpmResult()
        self._t0 = 0.0
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open the window: edge readings (energy, GPM), then start the polling thread."""
        if self._state == "running":
            raise RuntimeError("TelemetrySampler.start() called twice without stop()")
        self._reset()
        self._state = "running"
        if self._nvml_device is None:
            return
        self._t0 = self._clock()
        self._energy_start = self._read_energy()
        if self._energy_start is not None:
            self._ticks = TickTracker(self._energy_start)
        self._gpm_open()
        self._thread = threading.Thread(target=self._poll, name="bigtrain-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the window: closing edge readings first (they bound the window), then the thread,
        then (outside the window) the energy counter's next step."""
        if self._state != "running":
            raise RuntimeError("TelemetrySampler.stop() called without start()")
        self._state = "stopped"
        if self._nvml_device is None:
            return
        if self._energy_start is not None:
            self._energy_end = self._read_energy()
        self._gpm_close()
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._energy_end is not None and self._ticks is not None:
            self._closing_tick = self._ticks.closing_tick(
                self._nvml_device.total_energy_mj, self._clock, time.sleep, self._energy_end
            )

    def _read_energy(self) -> EnergyRead | None:
        try:
            return energy_counter.read_energy(self._nvml_device.total_energy_mj, self._clock)
        except FieldUnavailable as exc:
            self._energy_reason = exc.reason
            return None

    def _gpm_open(self) -> None:
        if self._nvml_device.gpm_support[1] is not None:
            return
        try:
            self._gpm_window = self._nvml_device.gpm_open()
        except FieldUnavailable as exc:
            self._gpm_failed(f"GPM sample failed: {exc.reason}")

    def _gpm_close(self) -> None:
        if self._gpm_window is None:
            return
        window, self._gpm_window = self._gpm_window, None
        try:
            values, reasons = self._nvml_device.gpm_close(window)
        except FieldUnavailable as exc:
            self._gpm_failed(f"GPM metrics failed: {exc.reason}")
            return
        self._gpm = GpmResult(values=values, reasons=reasons)

    def _gpm_failed(self, reason: str) -> None:
        metric_ids, _ = self._nvml_device.gpm_support
        self._gpm = GpmResult(reasons={name: reason for name, _ in metric_ids})

    def _poll(self) -> None:
        """The thread: one sample now, then one every interval_s until stopped; between them, the
        energy counter's reads the tick tracker asks for."""
        device = self._nvml_device
        ticks = self._ticks
        next_sample_t = self._clock()
        while True:
            try:
                energy_due_s = ticks.due_s() if ticks is not None else None
                if energy_due_s is not None and self._clock() >= energy_due_s:
                    ticks.poll(device.total_energy_mj, self._clock)
                if self._clock() >= next_sample_t:
                    self._samples.append(self._take_sample())
                    next_sample_t += self.interval_s
                    if next_sample_t < self._clock():  # a slow read: skip missed ticks, no burst
                        next_sample_t = self._clock()
            except Exception as exc:  # a bug or a broken binding: keep what we have, say why
                self._thread_error = f"{type(exc).__name__}: {exc}"
                return
            wake_t = next_sample_t
            energy_due_s = ticks.due_s() if ticks is not None else None
            if energy_due_s is not None:
                wake_t = min(wake_t, energy_due_s)
            if self._stop_event.wait(max(0.0, wake_t - self._clock())):
                return

    def _take_sample(self) -> TelemetrySample:
        device = self._nvml_device
        readers: dict[str, Callable[[], Any]] = {
            "util_pct": device.utilization_pct,
            "mem_used_bytes": device.memory_used_bytes,
            "power_w": device.power_w,
            "power_instant_w": device.power_instant_w,
            "sm_clock_mhz": device.sm_clock_mhz,
            "mem_clock_mhz": device.mem_clock_mhz,
            "temperature_c": device.temperature_c,
            "throttle_mask": device.clock_event_mask,
        }
        values: dict[str, Any] = {"t_s": self._clock() - self._t0}
        for name, read in readers.items():
            if name in self._field_reasons:
                continue  # known unsupported: do not pay for asking again
            try:
                values[name] = read()
            except FieldUnavailable as exc:
                if exc.permanent:
                    self._field_reasons[name] = exc.reason
                else:
                    self._transient_errors += 1
        return TelemetrySample(**values)

    # ---- the result

    def result(self, window_s: float, steps: int, items: int) -> tuple[dict[str, Any] | None, str | None]:
        """(telemetry dict, None), or (None, reason) where there is no telemetry at all."""
        device = self._nvml_device
        if device is None:
            return None, self._reason
        if self._state != "stopped":
            raise RuntimeError("TelemetrySampler.result() needs start() and stop() first")
        gpm = self._gpm
        gpm_reason = device.gpm_support[1]
        if gpm_reason is not None:
            gpm = GpmResult(values=gpm.values, reasons={**gpm.reasons, **dict.fromkeys(GPM_FIELDS.values(), gpm_reason)})
        period_s, period_source = device.util_sample_period
        readings = WindowReadings(
            samples=tuple(self._samples),
            interval_s=self.interval_s,
            energy=self._energy_estimate(),
            field_reasons=dict(self._field_reasons),
            gpm=gpm,
            facts=SamplerFacts(
                gpu_name=device.name,
                nvml_device=device.ref,
                util_sample_period_s=period_s,
                util_sample_period_source=period_source,
                transient_read_errors=self._transient_errors,
                sampler_error=self._thread_error,
            ),
        )
        work = WindowWork(window_s=window_s, min_window_s=self.min_window_s, steps=steps, items=items)
        return summarise_window(readings, work).as_dict(), None

    def _energy_estimate(self) -> EnergyEstimate:
        if self._energy_start is None or self._energy_end is None:
            reason = self._energy_reason or "energy counter not read"
            return EnergyEstimate(energy_j=None, window_s=None, method=None, reason=reason)
        timing = self._ticks.timing if self._ticks is not None else None
        return energy_counter.estimate_energy(
            start=self._energy_start, end=self._energy_end, timing=timing, closing=self._closing_tick
        )
