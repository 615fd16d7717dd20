"""Energy over a window from NVML's total-energy counter, aligned to the counter's own ticks.

The counter moves in steps (~100 ms on an H200) and one read costs ~4 ms. Reading it once at each
edge of a window (`edge_reads`) is off by up to one step at each edge: ±5% of a 2 s window, ±10% of
1 s. Instead (`tick_aligned`):

1. the measuring thread reads the counter once at each edge, outside the window (as before);
2. the sampler thread polls the counter from the opening edge until it has seen two steps: the
   first step after the window opened (time tau_a, value E_a) and the next (an estimate of the step
   period T);
3. after the window closed, polling from the closing edge read finds the first step after it,
   tau_b; the step before it, tau_b - T, lies inside the window and its value is the one the
   closing edge read already returned;
4. the energy between those two steps is exact and all inside the window; it is scaled by
   window / (tau_(b-1) - tau_a) to the whole window. T is refined as (tau_b - tau_a) / n, with n the
   whole number of steps between them, so only the bracketing of three step times limits it.

A step's time is bracketed by the last read that still saw the old value and the first that saw the
new one; the half-widths of those brackets give `uncertainty_j`. The scaling assumes the power over
the uncovered edges (less than one step at each end) is the window's mean. Where the counter does
not step regularly (a fake, a stalled driver, a window under two steps), the result falls back to
the edge reads and says so in `method`.

Everything here takes its clock and its sleep as arguments, so tests drive it with a simulated
clock at the NVML boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bigtrain.measure.telemetry.errors import FieldUnavailable

TICK_ALIGNED = "tick_aligned"
EDGE_READS = "edge_reads"

#: Give up looking for a counter step after this long: NVML's counter steps every ~100 ms.
TICK_TIMEOUT_S = 0.5
#: Pause between two counter reads while looking for a step (a read itself takes ~4 ms).
TICK_POLL_GAP_S = 0.002
#: Steps found at the opening edge: the first gives tau_a, the second the step period.
OPENING_TICKS = 2
#: tau_b - tau_a must be this close to a whole number of periods for the steps to count as regular.
PERIOD_SLACK = 0.25


@dataclass(frozen=True, kw_only=True)
class EnergyRead:
    """One read of the total-energy counter and the clock just before and after it."""

    t_before_s: float
    t_after_s: float
    energy_mj: int

    @property
    def t_mid_s(self) -> float:
        return (self.t_before_s + self.t_after_s) / 2


@dataclass(frozen=True, kw_only=True)
class CounterTick:
    """One step of the counter, between the last read that saw the old value and the first that
    saw the new one."""

    before: EnergyRead
    after: EnergyRead

    @property
    def t_s(self) -> float:
        return (self.before.t_mid_s + self.after.t_mid_s) / 2

    @property
    def half_width_s(self) -> float:
        return (self.after.t_after_s - self.before.t_before_s) / 2


@dataclass(frozen=True, kw_only=True)
class EnergyEstimate:
    """Energy over a window: `energy_j` null with `reason` where there is none."""

    energy_j: float | None
    window_s: float | None
    method: str | None
    uncertainty_j: float | None = None
    tick_s: float | None = None
    reason: str | None = None


def read_energy(read_mj: Callable[[], int], clock: Callable[[], float]) -> EnergyRead:
    """Read the counter once, timed; raises FieldUnavailable as `read_mj` does."""
    t_before_s = clock()
    value_mj = read_mj()
    return EnergyRead(t_before_s=t_before_s, t_after_s=clock(), energy_mj=value_mj)


class TickWatch:
    """Feed it counter reads in time order; it keeps the steps it saw until it has `wanted`."""

    def __init__(self, baseline: EnergyRead, *, wanted: int, timeout_s: float) -> None:
        self._last = baseline
        self.wanted = wanted
        self.deadline_s = baseline.t_after_s + timeout_s
        self.ticks: list[CounterTick] = []
        self.error: str | None = None

    @property
    def done(self) -> bool:
        """Found enough steps, gave up, or met an error."""
        return len(self.ticks) >= self.wanted or self.error is not None or self._last.t_after_s > self.deadline_s

    def observe(self, read: EnergyRead) -> None:
        if read.energy_mj != self._last.energy_mj:
            self.ticks.append(CounterTick(before=self._last, after=read))
        self._last = read

    def poll(self, read_mj: Callable[[], int], clock: Callable[[], float]) -> None:
        """Take one read and observe it; a failed read ends the watch."""
        try:
            self.observe(read_energy(read_mj, clock))
        except FieldUnavailable as exc:
            self.error = exc.reason


def watch_ticks(
    read_mj: Callable[[], int],
    clock: Callable[[], float],
    sleep: Callable[[float], object],
    *,
    baseline: EnergyRead,
    wanted: int,
    timeout_s: float = TICK_TIMEOUT_S,
    poll_gap_s: float = TICK_POLL_GAP_S,
) -> list[CounterTick]:
    """Poll the counter from `baseline` until `wanted` steps were seen (or `timeout_s` passed)."""
    watch = TickWatch(baseline, wanted=wanted, timeout_s=timeout_s)
    while not watch.done:
        sleep(poll_gap_s)
        watch.poll(read_mj, clock)
    return watch.ticks


def estimate_energy(
    *, start: EnergyRead, end: EnergyRead, opening: Sequence[CounterTick], closing: Sequence[CounterTick]
) -> EnergyEstimate:
    """Energy over [start.t_after_s, end.t_before_s]: tick-aligned where the steps allow it, else
    the difference of the two edge reads."""
    window_s = end.t_before_s - start.t_after_s
    if end.energy_mj < start.energy_mj:  # the counter restarts when the driver reloads
        return EnergyEstimate(energy_j=None, window_s=None, method=None,
                              reason="the total-energy counter went backwards during the window")
    period_s = opening[1].t_s - opening[0].t_s if len(opening) >= 2 else None
    aligned = _tick_aligned(window_s, opening, closing, period_s)
    if aligned is not None:
        return aligned
    edge_j = (end.energy_mj - start.energy_mj) / 1000.0
    # Each edge read is up to one step stale, so the difference is off by up to one step's energy.
    uncertainty_j = edge_j / window_s * period_s if period_s and window_s > 0 else None
    return EnergyEstimate(energy_j=edge_j, window_s=window_s, method=EDGE_READS,
                          uncertainty_j=uncertainty_j, tick_s=period_s)


def _tick_aligned(
    window_s: float, opening: Sequence[CounterTick], closing: Sequence[CounterTick], period_s: float | None
) -> EnergyEstimate | None:
    if period_s is None or period_s <= 0 or not closing or window_s <= 0:
        return None
    first, last_seen = opening[0], closing[0]
    steps = round((last_seen.t_s - first.t_s) / period_s)
    if steps < 2 or abs((last_seen.t_s - first.t_s) / period_s - steps) > PERIOD_SLACK:
        return None  # too short, or the counter does not step regularly
    mean_period_s = (last_seen.t_s - first.t_s) / steps
    last_inside_s = last_seen.t_s - mean_period_s  # the step before the one seen after the window
    span_s = last_inside_s - first.t_s
    span_mj = last_seen.before.energy_mj - first.after.energy_mj
    if span_s <= 0 or span_mj < 0:
        return None
    energy_j = span_mj / 1000.0 * window_s / span_s
    span_error_s = (first.half_width_s + last_seen.half_width_s) * (1 + 1 / steps)
    return EnergyEstimate(energy_j=energy_j, window_s=window_s, method=TICK_ALIGNED,
                          uncertainty_j=energy_j * span_error_s / span_s, tick_s=mean_period_s)
