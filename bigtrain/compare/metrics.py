"""The comparable metrics of a record: name, record field, unit, direction and which test applies.

One definition per metric; `--threshold` names, help texts, the gate, the renderers and the
exports all read this table. Analysing side: never imports torch, pynvml or pandas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bigtrain.results.schema import CellRecord

#: A metric that wanders from run to run (timing, energy): gated only beyond threshold AND noise.
NOISY = "noisy"
#: A metric steady from run to run (memory): one value a side may gate on the threshold alone.
STEADY = "steady"
KINDS = (NOISY, STEADY)


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One comparable number of a record: how to read it, its unit, direction and kind."""

    name: str  # the key for --threshold
    label: str
    record_field: str  # where in the record it comes from, for help texts and the README
    unit: str  # s, items/s, bytes, J
    higher_is_better: bool
    value: Callable[[CellRecord], float | None]
    steps: Callable[[CellRecord], tuple[float, ...]] = field(default=lambda record: ())
    kind: str = NOISY

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind {self.kind!r}; valid: {', '.join(KINDS)}")

    @property
    def steady(self) -> bool:
        """True for a metric the threshold alone may gate when no noise test is possible."""
        return self.kind == STEADY


def _step_median(record: CellRecord) -> float | None:
    return record.step_time_s.median if record.step_time_s else None


def _per_step_throughput(record: CellRecord) -> tuple[float, ...]:
    if not record.items_per_step:
        return ()
    return tuple(record.items_per_step / s for s in record.step_times_s if s > 0)


def _optimizer_time(record: CellRecord) -> float | None:
    return record.phase_time_s.optimizer if record.phase_time_s else None


def _energy_per_step(record: CellRecord) -> float | None:
    """Energy per step in joules from the telemetry; None for a window NVML could not resolve."""
    telemetry = record.telemetry or {}
    per_step = telemetry.get("joules_per_step")
    if telemetry.get("valid") is False or not isinstance(per_step, (int, float)):
        return None
    return float(per_step)


def _optimizer_steps(record: CellRecord) -> tuple[float, ...]:
    return tuple((record.phase_times_s or {}).get("optimizer", ()))


METRICS: tuple[Metric, ...] = (
    Metric(name="step_time", label="step time", record_field="step_time_s.median", unit="s",
           higher_is_better=False, value=_step_median, steps=lambda r: r.step_times_s),
    Metric(name="items_per_s", label="throughput", record_field="items_per_s", unit="items/s",
           higher_is_better=True, value=lambda r: r.items_per_s, steps=_per_step_throughput),
    Metric(name="optimizer_time", label="optimizer step", record_field="phase_time_s.optimizer",
           unit="s", higher_is_better=False, value=_optimizer_time, steps=_optimizer_steps),
    Metric(name="peak_mem", label="peak memory allocated", record_field="peak_mem_allocated_bytes",
           unit="bytes", higher_is_better=False, value=lambda r: r.peak_mem_allocated_bytes,
           kind=STEADY),
    Metric(name="peak_rss", label="peak host RSS", record_field="peak_rss_bytes", unit="bytes",
           higher_is_better=False, value=lambda r: r.peak_rss_bytes, kind=STEADY),
    Metric(name="energy_per_step", label="energy per step", record_field="telemetry.joules_per_step",
           unit="J", higher_is_better=False, value=_energy_per_step),
    # converge records (`bigbench converge`); None on step-time records, which then do not count.
    # A candidate that does not reach the target where the baseline did is a regression of its
    # own (status not_reached, see compare.gate.status_comparison).
    Metric(name="time_to_target_s", label="time to target", record_field="time_to_target_s",
           unit="s", higher_is_better=False, value=lambda r: r.time_to_target_s),
    Metric(name="steps_to_target", label="steps to target", record_field="steps_to_target",
           unit="steps", higher_is_better=False,
           value=lambda r: None if r.steps_to_target is None else float(r.steps_to_target)),
)
METRIC_NAMES = tuple(m.name for m in METRICS)
METRICS_BY_NAME = {m.name: m for m in METRICS}


def metric_names_text(*, bigger_is_better: bool | None = None) -> str:
    """The metric names for a help text or error message, e.g. `step_time, items_per_s, ...`.

    With `bigger_is_better` only the metrics of that direction are named.
    """
    return ", ".join(
        m.name for m in METRICS
        if bigger_is_better is None or m.higher_is_better == bigger_is_better
    )
