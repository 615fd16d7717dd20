"""Cells measured on a busy machine (`host_load.busy` in their records), said where a comparison
or a report is read: a verdict on such a cell measures the machine as much as the code."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bigtrain.cells.axes import AXIS_NAMES, compare_cell_label
from bigtrain.results.schema import CellRecord

BUSY_PHRASE = "measured on a busy machine"
#: Cells named in one warning; the rest are counted.
NAMED_CELLS = 5


def busy_records(records: Iterable[CellRecord]) -> list[CellRecord]:
    """The records whose timed window the host was busy for."""
    return [r for r in records if r.measured_busy]


def busy_note(records: Sequence[CellRecord], where: str) -> str | None:
    """`<where>: 3 of 12 measurement(s) measured on a busy machine (other processes kept up to
    1.70 of 2 core(s) busy): a, b, c` (a measurement: one record, a cell's repeat or round);
    None when no record was busy. The one sentence compare and ab print; the report can call it
    as is."""
    busy = busy_records(records)
    if not busy:
        return None
    measured = sum(1 for r in records if r.host_load is not None)
    worst = max(r.host_load.get("other_cpu_cores", 0.0) for r in busy)
    cores = max(r.host_load.get("cores", 0) for r in busy)
    labels = sorted({_label(r) for r in busy})
    named = ", ".join(labels[:NAMED_CELLS]) + (
        f" and {len(labels) - NAMED_CELLS} more" if len(labels) > NAMED_CELLS else "")
    return (f"{where}: {len(busy)} of {measured} measurement(s) {BUSY_PHRASE} (other processes "
            f"kept up to {worst:.2f} of {cores} core(s) busy): {named}")


def _label(record: CellRecord) -> str:
    return compare_cell_label({name: getattr(record, name) for name in AXIS_NAMES})


def measured_busy(comparison: Any) -> bool:
    """The comparison's warnings name measurements made on a busy machine."""
    return any(BUSY_PHRASE in line for line in comparison.warnings)
