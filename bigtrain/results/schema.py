"""The result record: one line of `cells.jsonl`, and the run manifest.

Pure Python on purpose: both the measuring side and the analysing side import this module, and the
analysing side must not pull in torch or pynvml.

The record's fields are declared once, in the field table `bigtrain.results.fields` (the axes in
`bigtrain.cells.axes`); `CellRecord` and `RECORD_RULES` are made from it here. Units live in the key
names (`_s`, `_bytes`, `_w`, `_j`, `_pct`, `_per_s`). Adding a key keeps
`SCHEMA_VERSION`; renaming or removing one bumps it and registers the upgrade step in
`bigtrain.results.migrations`, through which `from_json` reads every older version.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bigtrain.cells.axes import AXIS_NAMES, AXIS_TABLE, record_axis_fields
from bigtrain.results.fields import (
    AXES_AFTER,
    DIST_BACKENDS,  # noqa: F401 - readers import it from here
    PROTOCOLS,
    RECORD_FIELDS,
    SCHEMA_VERSION,
    STATUSES,
    UNIT_SUFFIXES,  # noqa: F401 - readers import it from here
)
from bigtrain.results.migrations import upgrade
from bigtrain.results.validation import (
    ANY_FINITE_JSON,
    InvalidField,
    Rule,
    array,
    boolean,
    check_fields,
    choice,
    integer,
    mapping,
    number,
    obj,
    text,
    text_or_integer,
    timestamp,
)
from bigtrain.results.versions import SchemaError

STATUS_OK = "ok"
#: Statuses that mean the cell was attempted and did not produce a valid measurement.
FAILED_STATUSES = frozenset({"oom", "error", "timeout", "crashed", "diverged"})
#: Statuses decided by the matrix, not by running anything.
NOT_RUN_STATUSES = frozenset({"skipped", "unsupported"})
#: A converge cell that trained within its budget without reaching its target: an outcome, not a
#: failure (the record holds its curve and best value), and not a measurement of time to target.
NOT_REACHED = "not_reached"
#: The columns of a converge record's `curve`, one value per evaluation, in step order.
CURVE_COLUMNS = ("step", "wall_s", "train_loss", "eval_loss", "eval_metric")

#: The axis columns of a record, in table order (see bigtrain.cells.axes).
AXES = AXIS_NAMES
RUN_STATES = ("running", "complete", "interrupted")


@dataclass(frozen=True, kw_only=True)
class StepTimeStats:
    """Summary of the measured step times, in seconds."""

    median: float
    mean: float
    p10: float
    p90: float
    iqr: float
    n: int

    @classmethod
    def from_samples(cls, samples_s: Sequence[float]) -> StepTimeStats:
        """Summarise raw step times; quantiles use linear interpolation (numpy's default)."""
        if not samples_s:
            raise ValueError("no step times to summarise")
        ordered = sorted(samples_s)
        return cls(
            median=statistics.median(ordered),
            mean=statistics.fmean(ordered),
            p10=quantile(ordered, 0.10),
            p90=quantile(ordered, 0.90),
            iqr=quantile(ordered, 0.75) - quantile(ordered, 0.25),
            n=len(ordered),
        )


def quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of already sorted data by linear interpolation between closest ranks."""
    if not ordered:
        raise ValueError("quantile of no data")
    position = (len(ordered) - 1) * q
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    weight = position - lower
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


@dataclass(frozen=True, kw_only=True)
class PhaseTimes:
    """Median time of each phase of a training step, in seconds."""

    forward: float
    backward: float
    optimizer: float


# -- the record: built from the field table (bigtrain.results.fields) and the axis table --------
_COUNT = integer(minimum=0, nullable=True)
_AMOUNT = number(minimum=0, nullable=True)
_OPTIONAL_TEXT = text(nullable=True)


def _axis_rule(record_type: type) -> Rule:
    # batch_size, the one integer axis, counts samples: at least one.
    return integer(minimum=1) if record_type is int else text()


def _in_record_order(table: dict[str, Any]) -> dict[str, Any]:
    """`table` (field name -> anything) with the axes inserted after `AXES_AFTER`."""
    out: dict[str, Any] = {}
    for f in RECORD_FIELDS:
        out[f.name] = table[f.name]
        if f.name == AXES_AFTER:
            out.update({axis.name: table[axis.name] for axis in AXIS_TABLE})
    return out


#: Every field of a CellRecord and what it may hold, from the field table and the axis table
#: (tests/test_record_validation.py checks that each dataclass field has its rule). Keys a newer
#: writer added (kept in `extra`) follow ANY_FINITE_JSON.
RECORD_RULES: Mapping[str, Rule] = _in_record_order({
    **{f.name: f.rule for f in RECORD_FIELDS},
    **{axis.name: _axis_rule(axis.record_type) for axis in AXIS_TABLE},
})


class _RecordMethods:
    """What a CellRecord does; its fields come from the field table (see `CellRecord` below)."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise SchemaError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")
        if self.status != STATUS_OK and not self.reason:
            raise SchemaError(f"a record with status {self.status!r} needs a reason")
        if self.status == STATUS_OK and self.step_time_s is None:
            raise SchemaError("an ok record needs step_time_s")

    @property
    def failed(self) -> bool:
        """True when the cell was attempted and did not yield a valid measurement."""
        return self.status in FAILED_STATUSES

    @property
    def measured_busy(self) -> bool:
        """The host was busy over this record's timed window (`host_load.busy`, bigtrain's
        measure.host_load): its timings measure the machine as much as the code."""
        return isinstance(self.host_load, Mapping) and self.host_load.get("busy") is True

    def axes(self) -> dict[str, Any]:
        """The axis values, keyed by axis name."""
        return {name: getattr(self, name) for name in AXES}

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; nested dataclasses become dicts, tuples become lists."""
        out = dataclasses.asdict(self)
        out["step_times_s"] = list(self.step_times_s)
        out["telemetry"] = _plain(self.telemetry)
        out["extra"] = _plain(self.extra)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CellRecord:
        """Parse and validate a record; raises SchemaError naming the problem."""
        if not isinstance(data, Mapping):
            raise SchemaError(f"a record must be a JSON object, not {type(data).__name__}")
        data = _upgrade(data, "record")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        if missing:
            raise SchemaError(f"record lacks required keys: {', '.join(missing)}")
        try:
            check_fields(data, RECORD_RULES, present_only=True)
            for key in data.keys() - names:  # from a newer writer; kept in `extra`, so strict JSON
                ANY_FINITE_JSON.check(key, data[key])
        except InvalidField as exc:
            raise SchemaError.from_invalid(exc) from None
        kwargs = {k: v for k, v in data.items() if k in names}
        # Keys a newer minor writer added stay readable: keep them in `extra` rather than drop them.
        unknown = {k: v for k, v in data.items() if k not in names}
        if unknown:
            kwargs["extra"] = {**dict(data.get("extra") or {}), **unknown}
        if kwargs.get("step_time_s") is not None:
            kwargs["step_time_s"] = StepTimeStats(**kwargs["step_time_s"])
        if kwargs.get("phase_time_s") is not None:
            kwargs["phase_time_s"] = PhaseTimes(**kwargs["phase_time_s"])
        kwargs["step_times_s"] = tuple(float(x) for x in kwargs.get("step_times_s") or ())
        return cls(**kwargs)


#: One measured (or skipped, or failed) cell of a sweep: a line of `cells.jsonl`. Its fields are
#: the field table's (bigtrain.results.fields.RECORD_FIELDS) with the axes of
#: bigtrain.cells.axes.AXIS_TABLE after `repeat`: built with make_dataclass so that adding a field or an
#: axis is one table entry, with no hand-written attribute to keep in step.
CellRecord = dataclasses.make_dataclass(
    "CellRecord",
    list(_in_record_order({
        **{f.name: f.dataclass_field() for f in RECORD_FIELDS},
        **{name: (name, annotation, spec) for name, annotation, spec in record_axis_fields()},
    }).values()),
    bases=(_RecordMethods,),
    namespace={"__doc__": "One measured (or skipped, or failed) cell of a sweep: a line of "
                          "`cells.jsonl`. Fields: bigtrain.results.fields.RECORD_FIELDS and the "
                          "axes of bigtrain.cells.axes.AXIS_TABLE.",
               "__module__": __name__},
    frozen=True,
    kw_only=True,
)


def _upgrade(data: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The data checked and brought to SCHEMA_VERSION by the migration steps."""
    return upgrade(data, kind)


def _plain(value: Any) -> Any:
    """Deep-copy mappings and sequences into JSON-native dicts and lists."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    return value


#: The manifest's `spec.measure` (bigtrain.cells.spec.MeasureSettings: its keys, types and ranges).
MEASURE_RULES: Mapping[str, Rule] = {
    "warmup_s": number(minimum=0),
    "duration_s": number(above=0),
    "min_steps": integer(minimum=1),
    "repeats": integer(minimum=1),
    "cell_timeout_s": number(above=0),
    "seed": integer(),
}
#: The manifest's `spec.converge` (bigtrain.measure.converge.ConvergeSettings): the budgets.
CONVERGE_RULES: Mapping[str, Rule] = {
    "max_steps": integer(minimum=1),
    "max_time_s": number(above=0),
    "eval_every": integer(minimum=1),
}
#: The manifest's `spec` (bigtrain.cells.spec.SweepSpec.to_json): an axis holds a list of values.
SPEC_RULES: Mapping[str, Rule] = {
    "preset": text(nullable=True),
    "description": text(nullable=True),
    **{axis.name: array(text_or_integer()) for axis in AXIS_TABLE},
    "measure": obj(MEASURE_RULES, present_only=True),
    # a converge run's spec (`bigbench converge`); a step-time spec has neither key
    "protocol": choice(PROTOCOLS),
    "converge": obj(CONVERGE_RULES, present_only=True),
}
#: One GPU of the manifest's `environment.gpus` (bigtrain.measure.envinfo; null where NVML could not say).
GPU_RULES: Mapping[str, Rule] = {
    "index": _COUNT,
    "name": _OPTIONAL_TEXT,
    "uuid": _OPTIONAL_TEXT,
    "memory_total_bytes": _COUNT,
    "power_limit_w": _AMOUNT,
}
#: The manifest's `environment` fields that reports, exports and resume read.
ENVIRONMENT_RULES: Mapping[str, Rule] = {
    **{key: _OPTIONAL_TEXT for key in (
        "bigtrain_version", "host", "os", "python_version", "torch_version", "cuda_version",
        "driver_version", "cuda_driver_version", "nvml_reason", "cpu_model", "cuda_visible_devices",
        "git_commit")},
    "gpus": array(obj(GPU_RULES, present_only=True), nullable=True),
    "gpu_names": array(_OPTIONAL_TEXT, nullable=True),
    **{key: _COUNT for key in ("gpu_count", "cpu_cores_logical", "cpu_cores_physical", "ram_bytes",
                               "torch_num_threads")},
    "git_dirty": boolean(nullable=True),
    "git_commit_time": timestamp(nullable=True),
}
#: One node of a cluster executor's run (the manifest's `nodes`): the cluster's id for it, its
#: address and host name, what it offers, and its own environment fingerprint (bigtrain.measure.envinfo).
NODE_RULES: Mapping[str, Rule] = {
    "node_id": text(),
    "address": _OPTIONAL_TEXT,
    "host": _OPTIONAL_TEXT,
    "resources": mapping(number(minimum=0), nullable=True),
    "environment": obj(ENVIRONMENT_RULES, present_only=True, nullable=True),
}
#: Every field of a Manifest and what it may hold; `spec` and `environment` are open objects
#: (a newer writer may add keys) whose known keys follow the tables above.
MANIFEST_RULES: Mapping[str, Rule] = {
    "schema_version": integer(minimum=1),
    "run_id": text(),
    "bigtrain_version": text(),
    "spec": obj(SPEC_RULES, present_only=True),
    "environment": obj(ENVIRONMENT_RULES, present_only=True),
    "started_at": timestamp(),
    "ended_at": timestamp(nullable=True),
    "state": choice(RUN_STATES),
    "cells_total": _COUNT,
    "executor": text(),
    "nodes": array(obj(NODE_RULES, present_only=True), nullable=True),
    "repaired_lines": array(integer(minimum=1), nullable=True),
}


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """`manifest.json`: what was asked for, on which machine, and how far it got."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    bigtrain_version: str
    spec: Mapping[str, Any]
    environment: Mapping[str, Any]
    started_at: str
    ended_at: str | None = None
    state: str = "running"
    cells_total: int | None = None
    # where the cells ran (`bigbench sweep --executor`); runs written before the key ran locally
    executor: str = "local"
    # a cluster executor's nodes with their fingerprints (NODE_RULES); empty for `local`, whose
    # one machine is `environment`
    nodes: tuple[Mapping[str, Any], ...] = ()
    # lines of cells.jsonl cut short by a kill and closed with a newline on resume: skipped
    repaired_lines: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.state not in RUN_STATES:
            raise SchemaError(f"state {self.state!r} is not one of {', '.join(RUN_STATES)}")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        """Parse and validate a manifest; raises SchemaError naming the problem."""
        if not isinstance(data, Mapping):
            raise SchemaError("a manifest must be a JSON object")
        data = _upgrade(data, "manifest")
        fields = dataclasses.fields(cls)
        required = [f.name for f in fields
                    if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise SchemaError(f"manifest lacks required keys: {', '.join(missing)}")
        try:
            check_fields(data, MANIFEST_RULES, present_only=True)
        except InvalidField as exc:
            raise SchemaError.from_invalid(exc) from None
        names = {f.name for f in fields}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["repaired_lines"] = tuple(kwargs.get("repaired_lines") or ())
        kwargs["nodes"] = tuple(kwargs.get("nodes") or ())
        return cls(**kwargs)
