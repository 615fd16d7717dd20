"""One series per machine x cell x metric: a point per run, in commit-time order.

A series never mixes two machines (`load.machine_key`); a change of bigtrain, torch, driver or
CUDA version between two consecutive points is marked on the series. A point holds the run's
value (the median over the cell's repeats) and its samples: every measured step where the
metric has per-step values, else one value per repeat — the spread the detector weighs.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bigtrain.compare.metrics import METRICS, Metric
from bigtrain.history.load import SOFTWARE_KEYS, HistoryRun
from bigtrain.results.schema import CellRecord


@dataclass(frozen=True, kw_only=True)
class Point:
    """One run's value of one metric of one cell."""

    run: HistoryRun
    value: float
    samples: tuple[float, ...]
    repeats: int
    #: Some repeat of it was measured while other processes kept the host busy (host_load).
    busy: bool = False


@dataclass(frozen=True, kw_only=True)
class Series:
    """The points of one cell x metric on one machine, oldest first."""

    machine: str
    cell_id: str
    cell_label: str
    metric: Metric
    points: tuple[Point, ...]
    #: (index of the first point with the new software, `torch_version: 2.12 -> 2.13`, ...)
    software_changes: tuple[tuple[int, str], ...] = ()

    @property
    def key(self) -> str:
        """A short stable id, safe as a file name (a hash: labels come from files)."""
        text = f"{self.machine}\0{self.cell_id}\0{self.metric.name}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def values(self) -> tuple[float, ...]:
        """Each point's value, oldest first."""
        return tuple(point.value for point in self.points)


def cell_label(record: CellRecord) -> str:
    """The axes of a cell as one line, e.g. `cnn:tiny adam/foreach bf16 cpu bs=32`."""
    axes = record.axes()
    main = [str(axes.get(key)) for key in ("model", "optimizer", "precision", "device")
            if axes.get(key) not in (None, "")]
    # Axes at their neutral value (off, n/a, default, one rank) are left out of the label.
    rest = [f"{key}={value}" for key, value in axes.items()
            if key not in ("model", "optimizer", "precision", "device")
            and value not in (None, "", "n/a", "off", "default")
            and not (key == "world_size" and value == 1)]
    return " ".join(main + rest)


def _point(run: HistoryRun, metric: Metric, records: Sequence[CellRecord]) -> Point | None:
    values = [v for v in (metric.value(r) for r in records) if v is not None and v > 0]
    if not values:
        return None
    steps = [s for r in records for s in metric.steps(r) if s is not None and s > 0]
    samples = tuple(steps) if steps else tuple(float(v) for v in values)
    return Point(run=run, value=float(statistics.median(values)), samples=samples,
                 repeats=len(values), busy=any(r.measured_busy for r in records))


def _software_changes(points: Sequence[Point]) -> tuple[tuple[int, str], ...]:
    changes = []
    for index in range(1, len(points)):
        before, after = points[index - 1].run.software, points[index].run.software
        moved = [f"{key}: {before.get(key)} -> {after.get(key)}" for key in SOFTWARE_KEYS
                 if before.get(key) != after.get(key)]
        if moved:
            changes.append((index, "; ".join(moved)))
    return tuple(changes)


def build_series(runs: Sequence[HistoryRun], metrics: Sequence[Metric] = METRICS, *,
                 skip_busy: bool = False) -> list[Series]:
    """Every series with at least one point: per machine, cell and metric, in the runs' order
    (`runs` as `load_history` sorts them). Only records with status ok count; with `skip_busy`,
    a cell's run measured on a busy machine is left out of its series."""
    grouped: dict[tuple[str, str, str], list[Point]] = {}
    labels: dict[str, str] = {}
    for run in runs:
        by_cell: dict[str, list[CellRecord]] = {}
        for record in run.run.records:
            if record.status == "ok" and not (skip_busy and record.measured_busy):
                by_cell.setdefault(record.cell_id, []).append(record)
        for cell_id, records in by_cell.items():
            labels.setdefault(cell_id, cell_label(records[0]))
            for metric in metrics:
                point = _point(run, metric, records)
                if point is not None:
                    grouped.setdefault((run.machine, cell_id, metric.name), []).append(point)
    by_name = {metric.name: metric for metric in metrics}
    out = [Series(machine=machine, cell_id=cell_id, cell_label=labels[cell_id],
                  metric=by_name[name], points=tuple(points),
                  software_changes=_software_changes(points))
           for (machine, cell_id, name), points in grouped.items()]
    out.sort(key=lambda s: (s.machine, s.cell_label, s.cell_id,
                            [m.name for m in metrics].index(s.metric.name)))
    return out
