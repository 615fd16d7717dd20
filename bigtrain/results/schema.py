"""The result record: one line of `cells.jsonl`, and the run manifest.

Pure Python on purpose: both the measuring side and the analysing side import this module, and the
analysing side must not pull in torch or pynvml.

Units live in the key names (`_s`, `_bytes`, `_w`, `_j`, `_pct`, `_per_s`). Adding a key keeps
`SCHEMA_VERSION`; renaming or removing one bumps it and registers the upgrade step in
`bigtrain.results.migrations`, through which `from_json` reads every older version.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bigtrain.axes import AXIS_NAMES, AXIS_TABLE

SCHEMA_VERSION = 1

STATUS_OK = "ok"
#: Every status a record can carry. `skipped` and `unsupported` are decided before any work starts.
STATUSES = ("ok", "oom", "error", "timeout", "crashed", "diverged", "skipped", "unsupported")
#: Statuses that mean the cell was attempted and did not produce a valid measurement.
FAILED_STATUSES = frozenset({"oom", "error", "timeout", "crashed", "diverged"})
#: Statuses decided by the matrix, not by running anything.
NOT_RUN_STATUSES = frozenset({"skipped", "unsupported"})

#: The axis columns of a record, in table order (see bigtrain.axes).
AXES = AXIS_NAMES
RUN_STATES = ("running", "complete", "interrupted")


class SchemaError(ValueError):
    """A record or manifest that does not match the result contract."""


class SchemaVersionError(SchemaError):
    """A record or manifest whose schema_version this bigtrain cannot read."""

    key = "schema_version"  # the key at fault, for pointing at its line


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


@dataclass(frozen=True, kw_only=True)
class CellRecord:
    """One measured (or skipped, or failed) cell of a sweep: a line of `cells.jsonl`."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    cell_id: str
    repeat: int = 0
    # the axes: one field per entry of bigtrain.axes.AXIS_TABLE (tests/test_axes.py checks)
    model: str
    optimizer: str
    impl: str
    batch_norm: str
    precision: str
    device: str
    batch_size: int
    compile: str
    cuda_graphs: str = "off"  # optional axis: records written before it existed ran eagerly
    # outcome
    status: str
    reason: str | None = None
    traceback_tail: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    device_name: str | None = None
    worker_pid: int | None = None
    # timing
    step_time_s: StepTimeStats | None = None
    step_times_s: tuple[float, ...] = ()
    phase_time_s: PhaseTimes | None = None
    warmup_steps: int | None = None
    warmup_s: float | None = None
    window_s: float | None = None
    # throughput
    items_per_s: float | None = None
    item_unit: str | None = None
    items_per_step: int | None = None
    param_count: int | None = None
    # memory
    peak_mem_allocated_bytes: int | None = None
    peak_mem_reserved_bytes: int | None = None
    peak_rss_bytes: int | None = None
    # training sanity
    loss_first: float | None = None
    loss_last: float | None = None
    # hardware telemetry (NVML); null with a reason where unavailable
    telemetry: Mapping[str, Any] | None = None
    telemetry_reason: str | None = None
    # FLOPs and model FLOPs utilisation
    flops_per_step: float | None = None
    achieved_tflops: float | None = None
    mfu_pct: float | None = None
    mfu_peak_tflops: float | None = None
    mfu_peak_source: str | None = None
    # against this machine's calibration (`bigbench calibrate`), and the optimizer's bandwidth floor
    measured_peak_tflops: float | None = None
    pct_of_measured_peak: float | None = None
    optimizer_bytes_per_step: int | None = None
    optimizer_floor_s: float | None = None
    optimizer_floor_ratio: float | None = None
    calibration_id: str | None = None
    hardware_reasons: Mapping[str, str] | None = None  # why a hardware metric above is null
    # every measured step's phases, {forward, backward, optimizer}: lists in step order
    phase_times_s: Mapping[str, Sequence[float]] | None = None
    # the measured workload definition's stamp (bigtrain.workloads.workload_version); null if older
    workload_version: str | None = None
    # anything else a workload or a later version wants to say
    extra: Mapping[str, Any] = field(default_factory=dict)

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
        kwargs = {k: v for k, v in data.items() if k in names}
        for key in ("extra", "telemetry", "hardware_reasons", "phase_times_s"):
            if kwargs.get(key) is not None and not isinstance(kwargs[key], Mapping):
                raise SchemaError(f"{key} must be an object, got {kwargs[key]!r:.60}")
        # Keys a newer minor writer added stay readable: keep them in `extra` rather than drop them.
        unknown = {k: v for k, v in data.items() if k not in names}
        if unknown:
            kwargs["extra"] = {**dict(data.get("extra") or {}), **unknown}
        try:
            if kwargs.get("step_time_s") is not None:
                kwargs["step_time_s"] = StepTimeStats(**kwargs["step_time_s"])
            if kwargs.get("phase_time_s") is not None:
                kwargs["phase_time_s"] = PhaseTimes(**kwargs["phase_time_s"])
            kwargs["step_times_s"] = tuple(float(x) for x in kwargs.get("step_times_s") or ())
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"malformed field: {exc}") from None
        for key in ("run_id", "cell_id"):
            if not isinstance(kwargs[key], str):
                raise SchemaError(f"{key} must be a string, got {kwargs[key]!r}")
        for axis in AXIS_TABLE:
            if axis.name in kwargs:  # a missing required axis was refused above
                _check_axis_type(axis.name, kwargs[axis.name], axis.record_type)
        return cls(**kwargs)


_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _check_axis_type(name: str, value: Any, expected: type) -> None:
    # bool is an int to Python, but never a valid batch size or count.
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        word = _TYPE_WORDS.get(expected, expected.__name__)
        raise SchemaError(f"{name} must be {word}, got {value!r}")


def _upgrade(data: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The data checked and brought to SCHEMA_VERSION by the migration steps."""
    # Imported here: migrations reads this module's SCHEMA_VERSION and error types.
    from bigtrain.results.migrations import upgrade

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
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            kwargs = {k: v for k, v in data.items() if k in names}
            kwargs["repaired_lines"] = tuple(int(n) for n in kwargs.get("repaired_lines") or ())
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"malformed manifest: {exc}") from None
