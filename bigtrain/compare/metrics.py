"""The comparable metrics of a record: name, record field, unit, direction and which test applies.

Made from the field table (`bigtrain.results.fields`: each field's `gates`), where every metric
is declared once; `--threshold` names, help texts, the gate, the renderers and the exports all read
`METRICS`. Analysing side: never imports torch, pynvml or pandas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bigtrain.results.fields import EXPORT, HIGHER, KINDS, NOISY, STEADY, Field, Gate, field_gates
from bigtrain.results.schema import CellRecord

__all__ = ["KINDS", "METRICS", "METRICS_BY_NAME", "METRIC_NAMES", "EXPORTED_METRICS", "Metric", "NOISY", "STEADY",
           "metric_names_text"]


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One comparable number of a record: how to read it, its unit, direction and kind."""

    name: str  # the key for --threshold
    label: str
    record_field: str  # where in the record it comes from, for help texts and the docs
    unit: str  # s, items/s, bytes, J
    higher_is_better: bool
    value: Callable[[CellRecord], float | None]
    steps: Callable[[CellRecord], tuple[float, ...]] = field(default=lambda record: ())
    kind: str = NOISY
    #: Whether the github-action-benchmark and pytest-benchmark exports carry it.
    exported: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind {self.kind!r}; valid: {', '.join(KINDS)}")

    @property
    def steady(self) -> bool:
        """True for a metric the threshold alone may gate when no noise test is possible."""
        return self.kind == STEADY


def _no_steps(record: CellRecord) -> tuple[float, ...]:
    return ()


def _metric(declared: Field, gate: Gate) -> Metric:
    """The compare metric of one gate of a field-table entry."""
    name = declared.name

    def field_value(record: CellRecord) -> float | None:
        return getattr(record, name)

    return Metric(name=gate.name, label=gate.label, record_field=gate.record_field or name,
                  unit=gate.unit, higher_is_better=gate.direction == HIGHER,
                  value=gate.value or field_value, steps=gate.steps or _no_steps, kind=gate.kind,
                  exported=EXPORT in declared.shows)


METRICS: tuple[Metric, ...] = tuple(_metric(declared, gate) for declared, gate in field_gates())
#: The metrics the github-action-benchmark and pytest-benchmark exports carry.
EXPORTED_METRICS: tuple[Metric, ...] = tuple(m for m in METRICS if m.exported)
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
