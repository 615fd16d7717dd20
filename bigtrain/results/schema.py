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

from bigtrain.cells.axes import AXIS_NAMES, AXIS_TABLE
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
    numbers,
    obj,
    text,
    text_or_integer,
    timestamp,
)
from bigtrain.results.versions import SCHEMA_VERSION, SchemaError

STATUS_OK = "ok"
#: Every status a record can carry. `skipped` and `unsupported` are decided before any work starts.
STATUSES = ("ok", "oom", "error", "timeout", "crashed", "diverged", "skipped", "unsupported",
            "not_reached")
#: Statuses that mean the cell was attempted and did not produce a valid measurement.
FAILED_STATUSES = frozenset({"oom", "error", "timeout", "crashed", "diverged"})
#: Statuses decided by the matrix, not by running anything.
NOT_RUN_STATUSES = frozenset({"skipped", "unsupported"})
#: A converge cell that trained within its budget without reaching its target: an outcome, not a
#: failure (the record holds its curve and best value), and not a measurement of time to target.
NOT_REACHED = "not_reached"
#: What a record measured: the step-time protocol (`bigbench sweep`) or time to a target
#: (`bigbench converge`).
PROTOCOLS = ("step_time", "converge")
#: torch.distributed backends a data-parallel cell runs on (NCCL on GPUs, gloo on the CPU).
DIST_BACKENDS = ("nccl", "gloo")
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


# -- what each field may hold (checked on load; see bigtrain.results.validation) ------------------
#: Names ending in these carry a unit, so a telemetry value under such a name is a measurement.
UNIT_SUFFIXES = ("_s", "_bytes", "_w", "_j", "_pct", "_per_s", "_mhz", "_c", "_tflops", "_ratio",
                 "_per_step")

_TIME_S = number(above=0)  # a measured time: a step cannot take no time
_SPAN_S = number(minimum=0, nullable=True)  # a duration that may be zero (no warm-up)
_COUNT = integer(minimum=0, nullable=True)
_AMOUNT = number(minimum=0, nullable=True)  # FLOPs, rates, percentages, ratios
_OPTIONAL_TEXT = text(nullable=True)


#: Telemetry values with a fixed kind (bigtrain.measure.telemetry writes them; the Parquet writer
#: types their columns by name). Other values: a measurement when the name carries a unit.
_TELEMETRY_RULES: Mapping[str, Rule] = {
    "valid": boolean(nullable=True),
    "unsupported": mapping(text(), nullable=True),
    "samples": _COUNT,
    "transient_read_errors": _COUNT,
    "nvml_device": text_or_integer(nullable=True),
    **{key: _OPTIONAL_TEXT for key in ("energy_method", "invalid_reason", "sampler_error",
                                       "gpu_name", "util_sample_period_source")},
    "throttle_reasons_seen": array(text(), nullable=True),
}
#: The protocol's notes in `extra` that readers type by name; other keys are any strict JSON.
_EXTRA_RULES: Mapping[str, Rule] = {
    "warmup_settled": boolean(nullable=True),
    **{key: _OPTIONAL_TEXT for key in ("peak_rss_method", "flops_convention", "host_sync_reason")},
}


def _telemetry_value(key: str) -> Rule:
    """A telemetry value's rule from its name."""
    if key in _TELEMETRY_RULES:
        return _TELEMETRY_RULES[key]
    return _AMOUNT if key.endswith(UNIT_SUFFIXES) else ANY_FINITE_JSON


def _extra_value(key: str) -> Rule:
    return _EXTRA_RULES.get(key, ANY_FINITE_JSON)


def _axis_rule(record_type: type) -> Rule:
    # batch_size, the one integer axis, counts samples: at least one.
    return integer(minimum=1) if record_type is int else text()


#: Every field of a CellRecord and what it may hold (tests/test_record_validation.py checks that
#: each dataclass field has its rule). Keys a newer writer added (kept in `extra`) follow
#: ANY_FINITE_JSON.
RECORD_RULES: Mapping[str, Rule] = {
    "schema_version": integer(minimum=1),
    "run_id": text(),
    "cell_id": text(),
    "repeat": integer(minimum=0),
    **{axis.name: _axis_rule(axis.record_type) for axis in AXIS_TABLE},
    "status": choice(STATUSES),
    "reason": _OPTIONAL_TEXT,
    "traceback_tail": _OPTIONAL_TEXT,
    "started_at": timestamp(nullable=True),
    "ended_at": timestamp(nullable=True),
    "device_name": _OPTIONAL_TEXT,
    "worker_pid": _COUNT,
    "host": _OPTIONAL_TEXT,
    "node_id": _OPTIONAL_TEXT,
    "step_time_s": obj({"median": _TIME_S, "mean": _TIME_S, "p10": _TIME_S, "p90": _TIME_S,
                        "iqr": number(minimum=0), "n": integer(minimum=1)},
                       nullable=True, closed=True),
    "step_times_s": numbers(above=0, nullable=True),
    "phase_time_s": obj({"forward": number(minimum=0), "backward": number(minimum=0),
                         "optimizer": number(minimum=0)}, nullable=True, closed=True),
    "warmup_steps": _COUNT,
    "warmup_s": _SPAN_S,
    "window_s": _SPAN_S,
    "items_per_s": _AMOUNT,
    "item_unit": _OPTIONAL_TEXT,
    "items_per_step": _COUNT,
    "param_count": _COUNT,
    "peak_mem_allocated_bytes": _COUNT,
    "peak_mem_reserved_bytes": _COUNT,
    "peak_rss_bytes": _COUNT,
    "loss_first": number(nullable=True),
    "loss_last": number(nullable=True),
    "telemetry": mapping(value_rule=_telemetry_value, nullable=True),
    "telemetry_reason": _OPTIONAL_TEXT,
    "host_load": obj({"loadavg_1m": _AMOUNT, "other_cpu_s": number(minimum=0),
                      "other_cpu_cores": number(minimum=0), "steal_pct": _AMOUNT,
                      "gpu_other_processes": _COUNT, "cores": integer(minimum=1),
                      "cores_used": integer(minimum=1), "busy": boolean()}, nullable=True),
    "flops_per_step": _AMOUNT,
    "achieved_tflops": _AMOUNT,
    "mfu_pct": _AMOUNT,
    "mfu_peak_tflops": number(above=0, nullable=True),
    "mfu_peak_source": _OPTIONAL_TEXT,
    "measured_peak_tflops": number(above=0, nullable=True),
    "pct_of_measured_peak": _AMOUNT,
    "optimizer_bytes_per_step": _COUNT,
    "optimizer_floor_s": _SPAN_S,
    "optimizer_floor_ratio": _AMOUNT,
    "calibration_id": _OPTIONAL_TEXT,
    "hardware_reasons": mapping(text(), nullable=True),
    "phase_times_s": mapping(numbers(minimum=0), nullable=True),
    "workload_version": _OPTIONAL_TEXT,
    "protocol": choice(PROTOCOLS),
    "seed": integer(minimum=0, nullable=True),
    "lr_used": number(above=0, nullable=True),
    "target_metric": _OPTIONAL_TEXT,
    "target_value": number(nullable=True),
    "target_direction": choice(("max", "min"), nullable=True),
    "steps_to_target": _COUNT,
    "time_to_target_s": _SPAN_S,
    "energy_to_target_j": _AMOUNT,
    "data_time_s": _SPAN_S,
    "eval_time_s": _SPAN_S,
    "best_value": number(nullable=True),
    "final_value": number(nullable=True),
    "final_eval_loss": number(nullable=True),
    "curve": mapping(numbers(), nullable=True),
    "rank_step_time_s": numbers(above=0, nullable=True),
    "no_sync_step_time_s": number(above=0, nullable=True),
    "comm_share_pct": _AMOUNT,
    "dist_backend": choice(DIST_BACKENDS, nullable=True),
    "extra": mapping(value_rule=_extra_value, nullable=True),
}


@dataclass(frozen=True, kw_only=True)
class CellRecord:
    """One measured (or skipped, or failed) cell of a sweep: a line of `cells.jsonl`."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    cell_id: str
    repeat: int = 0
    # the axes: one field per entry of bigtrain.cells.axes.AXIS_TABLE (tests/test_axes.py checks)
    model: str
    optimizer: str
    impl: str
    batch_norm: str
    precision: str
    device: str
    batch_size: int
    compile: str
    cuda_graphs: str = "off"  # optional axis: records written before it existed ran eagerly
    lr: str = "default"  # optional axis: records written before it used each optimizer's own lr
    world_size: int = 1  # optional axis: data-parallel ranks; records before it ran one process
    # outcome
    status: str
    reason: str | None = None
    traceback_tail: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    device_name: str | None = None
    worker_pid: int | None = None
    # where it ran: the host name of the machine, and the cluster's id of the node (a cluster
    # executor such as `ray`; null for `local`). Null on records written before the fields.
    host: str | None = None
    node_id: str | None = None
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
    # the host's load over the timed window (bigtrain.measure.host_load); null if not measured
    host_load: Mapping[str, Any] | None = None
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
    # -- time to target (`bigbench converge`); None/empty on step-time records ------------------
    protocol: str = "step_time"
    seed: int | None = None  # the training seed (converge: one per repeat)
    lr_used: float | None = None  # the learning rate actually used (the lr axis resolved)
    target_metric: str | None = None  # the held-out quantity the target is on (e.g. accuracy)
    target_value: float | None = None
    target_direction: str | None = None  # "max": higher is better; "min": lower is better
    steps_to_target: int | None = None  # optimizer steps until the first evaluation at target
    time_to_target_s: float | None = None  # wall seconds for those steps, data loading included
    energy_to_target_j: float | None = None  # GPU energy for those steps (NVML), None on CPU
    data_time_s: float | None = None  # of the time spent, the loader's share (batches, shuffles)
    eval_time_s: float | None = None  # held-out evaluations: excluded from time_to_target_s
    best_value: float | None = None  # best held-out target metric seen
    final_value: float | None = None  # held-out target metric at the last evaluation
    final_eval_loss: float | None = None
    # {step, wall_s, train_loss, eval_loss, eval_metric}: equal-length lists, one per evaluation
    curve: Mapping[str, Sequence[float]] | None = None
    # -- data-parallel cells (world_size > 1, bigtrain.run.distributed); None otherwise ----------
    # The cell's step_time_s/step_times_s are the slowest rank's; items_per_s counts all ranks.
    rank_step_time_s: Sequence[float] | None = None  # each rank's median step time, rank order
    no_sync_step_time_s: float | None = None  # the slowest rank's median step with no all-reduce
    comm_share_pct: float | None = None  # 100 * (1 - no_sync / synced median): communication
    dist_backend: str | None = None  # the torch.distributed backend: nccl (GPUs) or gloo (CPU)
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
