"""A window's samples and edge readings -> the record's `telemetry` dict (pure, no NVML).

Typed in and out: `WindowReadings` (what the sampler read) and `WindowWork` (what the window did)
go in, a `WindowTelemetry` comes out; `WindowTelemetry.as_dict()` is the record's `telemetry`. A null
measured field always has its reason in `unsupported`.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bigtrain.measure.telemetry.energy import EnergyEstimate
from bigtrain.measure.telemetry.nvml import GPM_FIELDS

#: A window must span this many utilization sample periods (and at least MIN_WINDOW_FLOOR_S).
MIN_WINDOW_PERIODS = 5
MIN_WINDOW_FLOOR_S = 1.0

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
    "power_instant_w": ("power_instant_mean_w",),
    "sm_clock_mhz": ("sm_clock_mean_mhz",),
    "mem_clock_mhz": ("mem_clock_mean_mhz",),
    "temperature_c": ("temperature_max_c",),
    "throttle_mask": ("throttle_reasons_seen",),
}
ENERGY_OUTPUTS = ("energy_j", "joules_per_step", "items_per_j", "power_from_energy_w")


def min_window_for(util_period_s: float) -> float:
    """The shortest window NVML can resolve: 5 utilization sample periods, and at least 1 s."""
    return max(MIN_WINDOW_FLOOR_S, MIN_WINDOW_PERIODS * util_period_s)


def throttle_names(mask: int) -> list[str]:
    """The names of the clock-event reason bits set in `mask` (unknown bits as hex)."""
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.append(f"unknown_0x{unknown:x}")
    return names


# --------------------------------------------------------------------------------------------------
# In


@dataclass(frozen=True, kw_only=True)
class TelemetrySample:
    """One poll of the cheap NVML fields; None where the read failed."""

    t_s: float
    util_pct: float | None = None
    mem_used_bytes: int | None = None
    power_w: float | None = None
    power_instant_w: float | None = None   # NVML_FI_DEV_POWER_INSTANT: not averaged over ~1 s
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    temperature_c: float | None = None
    throttle_mask: int | None = None


@dataclass(frozen=True, kw_only=True)
class GpmResult:
    """GPM metrics over the window: {field: value}, and {field: why missing}."""

    values: Mapping[str, float] = field(default_factory=dict)
    reasons: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class SamplerFacts:
    """Which device was sampled and how the sampling went (copied into the dict as they are)."""

    gpu_name: str | None
    nvml_device: int | str
    util_sample_period_s: float
    util_sample_period_source: str
    transient_read_errors: int
    sampler_error: str | None


@dataclass(frozen=True, kw_only=True)
class WindowReadings:
    """Everything the sampler read over one window."""

    samples: Sequence[TelemetrySample]
    interval_s: float
    energy: EnergyEstimate
    field_reasons: Mapping[str, str] = field(default_factory=dict)  # sampled field -> why missing for good
    gpm: GpmResult = field(default_factory=GpmResult)
    facts: SamplerFacts | None = None


@dataclass(frozen=True, kw_only=True)
class WindowWork:
    """What the measured window did, from the step loop."""

    window_s: float
    min_window_s: float
    steps: int
    items: int


# --------------------------------------------------------------------------------------------------
# Out


@dataclass(frozen=True, kw_only=True)
class WindowTelemetry:
    """The telemetry of one window; `as_dict()` is the record's `telemetry` (keys in this order)."""

    util_mean_pct: float | None
    util_max_pct: float | None
    sm_active_pct: float | None
    sm_occupancy_pct: float | None
    tensor_active_pct: float | None
    dram_bw_util_pct: float | None
    mem_used_max_bytes: int | None
    power_mean_w: float | None
    power_max_w: float | None
    power_instant_mean_w: float | None
    energy_j: float | None
    energy_window_s: float | None
    energy_method: str | None
    energy_uncertainty_j: float | None
    energy_tick_s: float | None
    power_from_energy_w: float | None
    joules_per_step: float | None
    items_per_j: float | None
    sm_clock_mean_mhz: float | None
    mem_clock_mean_mhz: float | None
    temperature_max_c: float | None
    throttle_reasons_seen: list[str] | None
    samples: int
    interval_s: float
    window_s: float
    min_window_s: float
    valid: bool
    invalid_reason: str | None
    unsupported: Mapping[str, str]
    timeline: Mapping[str, list[Any]]
    facts: SamplerFacts | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record's `telemetry` dict (the facts, where known, flattened in at the end)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "facts"}
        out["unsupported"] = dict(self.unsupported)
        out["timeline"] = {key: list(values) for key, values in self.timeline.items()}
        if self.facts is not None:
            out.update(dataclasses.asdict(self.facts))
        return out


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarise_window(readings: WindowReadings, work: WindowWork) -> WindowTelemetry:
    """Summarise one window's readings (pure function)."""
    samples = readings.samples
    unsupported: dict[str, str] = {}

    def series(name: str) -> list[Any]:
        return [getattr(s, name) for s in samples if getattr(s, name) is not None]

    util, power = series("util_pct"), series("power_w")
    mem, temperature, masks = series("mem_used_bytes"), series("temperature_c"), series("throttle_mask")
    gpm = {name: readings.gpm.values.get(name) for name in GPM_FIELDS.values()}
    for name, value in gpm.items():
        if value is None:
            unsupported[name] = readings.gpm.reasons.get(name, "GPM not sampled")

    seen = 0
    for mask in masks:
        seen |= mask
    sampled = {
        "util_mean_pct": _mean(util),
        "util_max_pct": max(util) if util else None,
        "mem_used_max_bytes": max(mem) if mem else None,
        "power_mean_w": _mean(power),
        "power_max_w": max(power) if power else None,
        "power_instant_mean_w": _mean(series("power_instant_w")),
        "sm_clock_mean_mhz": _mean(series("sm_clock_mhz")),
        "mem_clock_mean_mhz": _mean(series("mem_clock_mhz")),
        "temperature_max_c": max(temperature) if temperature else None,
        "throttle_reasons_seen": throttle_names(seen) if masks else None,
    }
    for source, outputs in SAMPLED_OUTPUTS.items():
        for name in outputs:
            if sampled[name] is None:
                if source in readings.field_reasons:
                    unsupported[name] = readings.field_reasons[source]
                else:
                    unsupported[name] = "no samples in the window" if not samples else "every read failed"

    energy = readings.energy
    energy_j = energy.energy_j
    derived = {
        # Power from the energy counter is the better mean: the power reading is itself averaged
        # over ~1 s on recent GPUs, so its samples lag the window.
        "power_from_energy_w": energy_j / energy.window_s if energy_j is not None and energy.window_s else None,
        "joules_per_step": energy_j / work.steps if energy_j is not None and work.steps > 0 else None,
        "items_per_j": work.items / energy_j if energy_j else None,
    }
    for name in ENERGY_OUTPUTS:
        if (energy_j if name == "energy_j" else derived[name]) is None:
            if energy_j is None:
                unsupported[name] = energy.reason or "energy counter not read"
            else:
                unsupported[name] = "zero steps, items or energy in the window"

    if work.window_s < work.min_window_s:
        invalid_reason: str | None = (
            f"window_too_short: {work.window_s:.3f} s is shorter than the {work.min_window_s:.3f} s "
            f"NVML can resolve here ({MIN_WINDOW_PERIODS} utilization sample periods, at least "
            f"{MIN_WINDOW_FLOOR_S:g} s); lengthen the measured window"
        )
    else:
        invalid_reason = None
    return WindowTelemetry(
        **sampled,
        **gpm,
        energy_j=energy_j,
        energy_window_s=energy.window_s,
        energy_method=energy.method,
        energy_uncertainty_j=energy.uncertainty_j,
        energy_tick_s=energy.tick_s,
        **derived,
        samples=len(samples),
        interval_s=readings.interval_s,
        window_s=work.window_s,
        min_window_s=work.min_window_s,
        valid=invalid_reason is None,
        invalid_reason=invalid_reason,
        unsupported=dict(sorted(unsupported.items())),
        timeline={
            "t_s": [round(s.t_s, 4) for s in samples],
            "util_pct": [s.util_pct for s in samples],
            "power_w": [s.power_w for s in samples],
            "sm_clock_mhz": [s.sm_clock_mhz for s in samples],
        },
        facts=readings.facts,
    )
