"""Energy over a window from NVML's total-energy counter, aligned to the counter's own steps.

The counter moves in steps (~100 ms on an H200) and one read costs ~4 ms. Reading it once at each
edge of a window (`edge_reads`) is off by up to one step at each edge: ±5% of a 2 s window, ±10% of
1 s. Instead (`tick_aligned`):

1. the measuring thread reads the counter once at each edge, outside the window (as before);
2. inside the window, the sampler thread (`TickTracker`) polls the counter until it has seen two
   steps: the first step after the window opened (time tau_0, value E_0) and the next, a first
   estimate of the step period T. It then sleeps, and times the step 2, 4, 8, ... periods after
   tau_0 again (waking a little before it is due), each time refining T as (tau_k - tau_0) / k. That
   keeps T precise to the bracketing of two step times divided by k, for a few reads per second;
3. after the window closed, polling from the closing edge read finds the first step after it,
   tau_b, whose number of periods since tau_0, n, is known by rounding. The step before it,
   tau_b - (tau_b - tau_0) / n, lies inside the window, and its value is the one the closing edge
   read already returned;
4. the energy between tau_0 and that step is exact and all inside the window; it is scaled by
   window / (tau_(n-1) - tau_0) to the whole window.

A step's time is bracketed by the last read that still saw the old value and the first that saw the
new one; the half-widths of the brackets give `uncertainty_j`. The scaling assumes the power over
the uncovered edges (less than one step at each end) is the window's mean. Where the counter does
not step regularly (a fake, a stalled driver, a window under two steps) or its steps were timed too
loosely (a starved thread) for alignment to beat the edge reads' one-step error, the result falls
back to the edge reads and says so in `method`.

Everything here takes its clock (and sleep) as arguments, so tests drive it with a simulated clock
at the NVML boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bigtrain.measure.telemetry.errors import FieldUnavailable

TICK_ALIGNED = "tick_aligned"
EDGE_READS = "edge_reads"

#: Give up looking for a counter step after this long: NVML's counter steps every ~100 ms.
TICK_TIMEOUT_S = 0.5
#: Pause between two counter reads while looking for a step (a read itself takes ~4 ms).
TICK_POLL_GAP_S = 0.002
#: A step whose bracket is wider than this (the thread was late) does not start the count.
LOOSE_BRACKET_S = 0.02
#: Re-time the step this many times further from tau_0 than the last one timed.
REFINE_FACTOR = 2
#: Wake this share of a period before a step is due.
WAKE_EARLY_PERIODS = 0.3
#: A step must fall this close to a whole number of periods after tau_0 to count as regular.
PERIOD_SLACK = 0.35


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
class TickTiming:
    """What the tracker learnt inside the window: the first step (tau_0) and the period."""

    first: CounterTick
    period_s: float
    periods_timed: int  # how many periods after tau_0 the last re-timed step was


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


class TickTracker:
    """Times the counter's steps inside a window; fed reads in time order by the sampler thread.

    `due_s()` says when the next read is wanted (None: done); `poll()` takes it.
    """

    def __init__(self, baseline: EnergyRead, *, timeout_s: float = TICK_TIMEOUT_S,
                 poll_gap_s: float = TICK_POLL_GAP_S) -> None:
        self._timeout_s = timeout_s
        self._poll_gap_s = poll_gap_s
        self._last = baseline  # the read a change is measured against
        self._armed = True  # False after a sleep: the next read is a fresh baseline
        self._next_read_s = baseline.t_after_s
        self._give_up_s = baseline.t_after_s + timeout_s
        self._first: CounterTick | None = None
        self._period_s: float | None = None
        self._periods_timed = 0
        self.stopped_why: str | None = None

    @property
    def timing(self) -> TickTiming | None:
        """The first step and the period, once two steps were timed."""
        if self._first is None or self._period_s is None:
            return None
        return TickTiming(first=self._first, period_s=self._period_s, periods_timed=self._periods_timed)

    def due_s(self) -> float | None:
        """Clock time of the next read wanted, or None when tracking is over."""
        return None if self.stopped_why is not None else self._next_read_s

    def poll(self, read_mj: Callable[[], int], clock: Callable[[], float]) -> None:
        """Take one read and observe it; a failed read ends the tracking."""
        try:
            self.observe(read_energy(read_mj, clock))
        except FieldUnavailable as exc:
            self.stopped_why = exc.reason

    def observe(self, read: EnergyRead) -> None:
        """One read, in time order."""
        if not self._armed:  # woke from a sleep: a change since the last read is not timed
            self._arm(read)
            return
        if read.energy_mj == self._last.energy_mj:
            self._last = read
            if read.t_after_s > self._give_up_s:
                self.stopped_why = f"the energy counter did not step within {self._timeout_s:g} s"
            self._next_read_s = read.t_after_s + self._poll_gap_s
            return
        tick = CounterTick(before=self._last, after=read)
        self._arm(read)
        if self._first is None or (self._period_s is None and tick.half_width_s > LOOSE_BRACKET_S):
            self._first = tick if tick.half_width_s <= LOOSE_BRACKET_S else None
            return  # hunt on for the first (or a tightly timed first) step
        if self._period_s is None:
            self._period_s, self._periods_timed = tick.t_s - self._first.t_s, 1
        else:
            periods = (tick.t_s - self._first.t_s) / self._period_s
            if abs(periods - round(periods)) > PERIOD_SLACK or round(periods) <= self._periods_timed:
                self.stopped_why = "the energy counter does not step regularly"
                return
            self._periods_timed = round(periods)
            self._period_s = (tick.t_s - self._first.t_s) / self._periods_timed
        target = REFINE_FACTOR * self._periods_timed
        wake_s = self._first.t_s + (target - WAKE_EARLY_PERIODS) * self._period_s
        self._armed = False
        self._next_read_s = max(wake_s, read.t_after_s + self._poll_gap_s)

    def _arm(self, read: EnergyRead) -> None:
        self._last = read
        self._armed = True
        self._next_read_s = read.t_after_s + self._poll_gap_s
        self._give_up_s = read.t_after_s + self._timeout_s

    def closing_tick(self, read_mj: Callable[[], int], clock: Callable[[], float],
                     sleep: Callable[[float], object], end: EnergyRead) -> CounterTick | None:
        """After the window: poll from the closing edge read `end` to the next step (None if the
        opening steps were not timed, or none came within three periods)."""
        timing = self.timing
        if timing is None:
            return None
        last = end
        give_up_s = end.t_after_s + min(self._timeout_s, 3 * timing.period_s)
        while last.t_after_s <= give_up_s:
            sleep(self._poll_gap_s)
            try:
                read = read_energy(read_mj, clock)
            except FieldUnavailable:
                return None
            if read.energy_mj != last.energy_mj:
                return CounterTick(before=last, after=read)
            last = read
        return None


def estimate_energy(
    *, start: EnergyRead, end: EnergyRead, timing: TickTiming | None, closing: CounterTick | None
) -> EnergyEstimate:
    """Energy over [start.t_after_s, end.t_before_s]: tick-aligned where the steps allow it, else
    the difference of the two edge reads."""
    window_s = end.t_before_s - start.t_after_s
    if end.energy_mj < start.energy_mj:  # the counter restarts when the driver reloads
        return EnergyEstimate(energy_j=None, window_s=None, method=None,
                              reason="the total-energy counter went backwards during the window")
    aligned = _tick_aligned(window_s, timing, closing)
    if aligned is not None:
        return aligned
    edge_j = (end.energy_mj - start.energy_mj) / 1000.0
    period_s = timing.period_s if timing is not None else None
    # Each edge read is up to one step stale, so the difference is off by up to one step's energy.
    uncertainty_j = edge_j / window_s * period_s if period_s and window_s > 0 else None
    return EnergyEstimate(energy_j=edge_j, window_s=window_s, method=EDGE_READS,
                          uncertainty_j=uncertainty_j, tick_s=period_s)


def _tick_aligned(window_s: float, timing: TickTiming | None, closing: CounterTick | None) -> EnergyEstimate | None:
    if timing is None or closing is None or window_s <= 0:
        return None
    first = timing.first
    periods = (closing.t_s - first.t_s) / timing.period_s
    steps = round(periods)
    if steps < 2 or abs(periods - steps) > PERIOD_SLACK:
        return None  # too short, or the counter does not step regularly
    mean_period_s = (closing.t_s - first.t_s) / steps
    span_s = closing.t_s - mean_period_s - first.t_s  # tau_0 to the last step inside the window
    span_mj = closing.before.energy_mj - first.after.energy_mj
    span_error_s = (first.half_width_s + closing.half_width_s) * (1 + 1 / steps)
    if span_s <= 0 or span_mj < 0 or span_error_s > mean_period_s / 2:
        return None  # steps timed so loosely that the edge reads (off by < 1 step) do as well
    energy_j = span_mj / 1000.0 * window_s / span_s
    return EnergyEstimate(energy_j=energy_j, window_s=window_s, method=TICK_ALIGNED,
                          uncertainty_j=energy_j * span_error_s / span_s, tick_s=mean_period_s)
