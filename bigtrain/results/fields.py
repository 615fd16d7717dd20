"""The field table: every field of a result record, declared once.

Each `Field` says everything the rest of bigtrain needs about one key of a `cells.jsonl` line: its
name, the annotation of its `CellRecord` attribute and its default, the rule a loaded value must
follow, its unit, which way is better, a label and a description, and which outputs show it:

- `FRAME`: a column of the tidy results frame (`bigtrain.results.frame`), and so of the CSV export
  and of every Parquet file, typed by `kind` (Parquet always writes it; see `known_columns`);
- `REPORT`: a column of the report's memory table (`report_label`);
- `COMPARE`: a metric `bigbench compare` gates (each `Gate`: name, direction, kind);
- `EXPORT`: that metric in the github-action-benchmark and pytest-benchmark exports.

Derived from this table, and declared nowhere else: the `CellRecord` dataclass fields
(`bigtrain.results.schema`), `RECORD_RULES`, the frame's columns, the Parquet column types, units
and descriptions (`bigtrain.results.parquet`), the report's memory columns, the compare metrics
(`bigtrain.compare.metrics`) and the exports' metrics. The axes are the exception that proves the
rule: they are declared in `bigtrain.cells.axes.AXIS_TABLE` and only placed here (`AXES_AFTER`).

Adding a metric is one entry in `RECORD_FIELDS` (and the measuring code that fills it). Adding a
key keeps `SCHEMA_VERSION`; renaming or removing one bumps it (see `bigtrain.results.migrations`).

Pure Python on purpose: the measuring side and the analysing side both import it, so nothing here
imports torch, pandas or pyarrow. Column kinds are named (`"float64"`); `bigtrain.results.parquet`
maps them to Arrow types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bigtrain.frameworks.base import FLOPS_SOURCES
from bigtrain.results.tuning import TUNE_ROLES
from bigtrain.results.validation import (
    ANY_FINITE_JSON,
    Rule,
    array,
    boolean,
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
from bigtrain.results.versions import SCHEMA_VERSION

# -- choices some fields take --------------------------------------------------------------------
#: Every status a record can carry. `skipped` and `unsupported` are decided before any work starts.
STATUSES = ("ok", "oom", "error", "timeout", "crashed", "diverged", "skipped", "unsupported",
            "not_reached")
#: What a record measured: the step-time protocol (`bigbench sweep`) or time to a target
#: (`bigbench converge`).
PROTOCOLS = ("step_time", "converge")
CONVERGE_PROTOCOL = "converge"
#: torch.distributed backends a data-parallel cell runs on (NCCL on GPUs, gloo on the CPU).
DIST_BACKENDS = ("nccl", "gloo")
#: A cell's profile: not asked, profiled, failed (its timing stands), cannot be profiled here.
PROFILE_STATUSES = ("none", "ok", "failed", "unsupported")

# -- outputs a field can show up in --------------------------------------------------------------
FRAME = "frame"
REPORT = "report"
COMPARE = "compare"
EXPORT = "export"
OUTPUTS = (FRAME, REPORT, COMPARE, EXPORT)

# -- directions ----------------------------------------------------------------------------------
LOWER = "lower"  # lower is better (time, memory, energy)
HIGHER = "higher"  # higher is better (throughput)
DIRECTIONS = (LOWER, HIGHER)

# -- compare kinds (see bigtrain.compare.metrics) ------------------------------------------------
#: A metric that wanders from run to run (timing, energy): gated only beyond threshold AND noise.
NOISY = "noisy"
#: A metric steady from run to run (memory): one value a side may gate on the threshold alone.
STEADY = "steady"
KINDS = (NOISY, STEADY)

# -- column kinds (Arrow types in bigtrain.results.parquet) --------------------------------------
STRING, INT64, FLOAT64, BOOL, TIMESTAMP, FLOAT64_LIST = (
    "string", "int64", "float64", "bool", "timestamp", "list<float64>")
COLUMN_KINDS = (STRING, INT64, FLOAT64, BOOL, TIMESTAMP, FLOAT64_LIST)

#: Names ending in these carry a unit, so a telemetry value under such a name is a measurement.
UNIT_SUFFIXES = ("_s", "_bytes", "_w", "_j", "_pct", "_per_s", "_mhz", "_c", "_tflops", "_ratio",
                 "_per_step")

#: A required field (no default): `Field.default` for the identity, axes and status.
REQUIRED: Any = dataclasses.MISSING

_TIME_S = number(above=0)  # a measured time: a step cannot take no time
_SPAN_S = number(minimum=0, nullable=True)  # a duration that may be zero (no warm-up)
_COUNT = integer(minimum=0, nullable=True)
_AMOUNT = number(minimum=0, nullable=True)  # FLOPs, rates, percentages, ratios
_OPTIONAL_TEXT = text(nullable=True)


@dataclass(frozen=True, kw_only=True)
class Column:
    """One column a structured field flattens to (`step_time_s.median` -> `step_time_median_s`),
    or a known key of an open mapping field (`telemetry.power_mean_w` -> `telemetry_power_mean_w`).
    """

    key: str  # the attribute or key inside the field's value
    kind: str
    description: str
    unit: str = ""
    #: The column's name; empty: the field's `prefix` + `key`.
    name: str = ""
    #: For a key of an open mapping: the rule its value follows in a record (None: any JSON).
    rule: Rule | None = None


@dataclass(frozen=True, kw_only=True)
class Gate:
    """A metric `bigbench compare` gates on, read from one field."""

    name: str  # the key for --threshold
    label: str
    direction: str
    unit: str  # as compare tables write it: s, items/s, bytes, J, steps
    kind: str = NOISY
    #: Where in the record the number comes from, for help texts (empty: the field's name).
    record_field: str = ""
    #: record -> the value (None: getattr(record, field name), as a float).
    value: Callable[[Any], float | None] | None = None
    #: record -> per-step values for the noise test (None: no per-step samples).
    steps: Callable[[Any], tuple[float, ...]] | None = None
    #: Its place in compare tables and exports (metrics without one follow, in table order).
    position: int = 1000

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"gate {self.name!r}: direction {self.direction!r}; valid: "
                             f"{', '.join(DIRECTIONS)}")
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind {self.kind!r}; valid: {', '.join(KINDS)}")


@dataclass(frozen=True, kw_only=True)
class Field:
    """One key of a result record: its declaration, rule, unit, direction and outputs."""

    name: str
    #: The annotation of the `CellRecord` attribute (text: the dataclass is built from it).
    annotation: str
    rule: Rule
    description: str
    default: Any = None
    default_factory: Callable[[], Any] | None = None
    unit: str = ""
    direction: str | None = None
    label: str = ""
    #: The column kind of its frame/Parquet column (FRAME) when the field is one column.
    kind: str | None = None
    shows: frozenset[str] = frozenset()
    #: A frame column only on records of this protocol (converge fields stay off step-time frames).
    protocol: str | None = None
    #: The columns a structured value flattens to (step_time_s, phase_time_s), or the known keys of
    #: an open mapping (telemetry, extra) whose other scalar keys become columns too.
    columns: tuple[Column, ...] = ()
    #: The prefix of the columns of an open mapping (`telemetry_`).
    prefix: str = ""
    #: The field may be null with the reason in `hardware_reasons` (-> a `hw_reason_<name>` column).
    hardware_reason: bool = False
    gates: tuple[Gate, ...] = ()
    #: The report's memory-table header ("allocated (MiB)"); REPORT fields in bytes need one.
    report_label: str = ""

    def __post_init__(self) -> None:
        # A bad entry is a bug in this table: say which entry and why, at import.
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"field {self.name!r}: direction {self.direction!r}; valid: "
                             f"{', '.join(DIRECTIONS)}")
        unknown = self.shows - set(OUTPUTS)
        if unknown:
            raise ValueError(f"field {self.name!r}: unknown outputs {sorted(unknown)}; valid: "
                             f"{', '.join(OUTPUTS)}")
        if FRAME in self.shows and self.kind is None and not (self.columns or self.prefix):
            raise ValueError(f"field {self.name!r} is a frame column, so needs a kind")
        if self.kind is not None and self.kind not in COLUMN_KINDS:
            raise ValueError(f"field {self.name!r}: kind {self.kind!r}; valid: "
                             f"{', '.join(COLUMN_KINDS)}")
        if REPORT in self.shows and not (self.report_label and self.unit == "bytes"):
            raise ValueError(f"field {self.name!r} is in the report's memory table, so needs a "
                             "report_label and the unit bytes")
        if (COMPARE in self.shows) != bool(self.gates):
            raise ValueError(f"field {self.name!r}: a compare metric needs COMPARE and a gate")
        if EXPORT in self.shows and COMPARE not in self.shows:
            raise ValueError(f"field {self.name!r}: exports carry compare metrics; add COMPARE")

    @property
    def required(self) -> bool:
        """True when a record must carry the key (no default)."""
        return self.default is REQUIRED and self.default_factory is None

    def dataclass_field(self) -> tuple[str, str, Any]:
        """(name, annotation, dataclasses.field) for `dataclasses.make_dataclass`."""
        if self.default_factory is not None:
            return self.name, self.annotation, dataclasses.field(default_factory=self.default_factory)
        if self.default is REQUIRED:
            return self.name, self.annotation, dataclasses.field()
        return self.name, self.annotation, dataclasses.field(default=self.default)


def _measure(name: str, annotation: str, rule: Rule, description: str, **kw: Any) -> Field:
    """A field that is null where a cell did not measure it (the common case)."""
    return Field(name=name, annotation=annotation, rule=rule, description=description, **kw)


def _telemetry_rule(key: str) -> Rule:
    return _AMOUNT if key.endswith(UNIT_SUFFIXES) else ANY_FINITE_JSON


def _unit_of(key: str) -> str:
    for suffix, unit in (("_per_s", "1/s"), ("_bytes", "bytes"), ("_pct", "%"), ("_mhz", "MHz"),
                         ("_per_j", "1/J"), ("_w", "W"), ("_j", "J"), ("_c", "°C"), ("_s", "s")):
        if key.endswith(suffix):
            return unit
    return ""


def _telemetry(key: str, description: str, kind: str = FLOAT64, rule: Rule | None = None) -> Column:
    return Column(key=key, kind=kind, description=description, unit=_unit_of(key),
                  rule=rule if rule is not None else _telemetry_rule(key))


#: The keys of a record's `host_load` (bigtrain.measure.host_load.HostLoad), as `host_*` columns.
HOST_LOAD_COLUMNS: tuple[Column, ...] = (
    Column(key="busy", kind=BOOL, description="other processes took cores this cell needed (or "
           "shared its GPU): its timings are not those of a quiet machine"),
    Column(key="loadavg_1m", kind=FLOAT64, description="1-minute load average at the window's end"),
    Column(key="other_cpu_s", kind=FLOAT64, unit="s",
           description="CPU time other processes took during the window"),
    Column(key="other_cpu_cores", kind=FLOAT64,
           description="other processes' CPU time over the window: the cores they kept busy"),
    Column(key="steal_pct", kind=FLOAT64, unit="%",
           description="CPU time the hypervisor stole during the window"),
    Column(key="gpu_other_processes", kind=INT64,
           description="other compute processes on the cell's GPU (NVML)"),
    Column(key="cores", kind=INT64, description="the host's logical cores"),
    Column(key="cores_used", kind=INT64, description="the cores the cell itself uses"),
)


#: The telemetry keys bigtrain.measure.telemetry writes (WindowTelemetry, GPM, SamplerFacts).
TELEMETRY_COLUMNS: tuple[Column, ...] = (
    _telemetry("util_mean_pct", "mean GPU utilisation over the window (NVML)"),
    _telemetry("util_max_pct", "highest GPU utilisation sample"),
    _telemetry("sm_active_pct", "SM activity (NVML GPM)"),
    _telemetry("sm_occupancy_pct", "SM occupancy (NVML GPM)"),
    _telemetry("tensor_active_pct", "tensor-core activity (NVML GPM)"),
    _telemetry("dram_bw_util_pct", "DRAM bandwidth utilisation (NVML GPM)"),
    _telemetry("mem_used_max_bytes", "highest device memory in use (NVML)"),
    _telemetry("power_mean_w", "mean power reading over the window"),
    _telemetry("power_max_w", "highest power reading"),
    _telemetry("power_instant_mean_w", "mean of NVML's instantaneous power field over the window "
               "(null where the driver lacks it; the averaged reading lags a short window)"),
    _telemetry("energy_j", "energy over the window from the energy counter"),
    _telemetry("energy_window_s", "the span the energy counter covered"),
    _telemetry("energy_method", "how energy was read (counter, ...)", STRING, _OPTIONAL_TEXT),
    _telemetry("energy_uncertainty_j", "uncertainty of energy_j from the counter's tick"),
    _telemetry("energy_tick_s", "the energy counter's update period"),
    _telemetry("power_from_energy_w", "mean power from the energy counter"),
    _telemetry("joules_per_step", "energy per training step"),
    _telemetry("items_per_j", "training items per joule"),
    _telemetry("sm_clock_mean_mhz", "mean SM clock"),
    _telemetry("mem_clock_mean_mhz", "mean memory clock"),
    _telemetry("temperature_max_c", "highest GPU temperature"),
    _telemetry("throttle_reasons_seen", "clock-event reasons seen in the window, comma-joined",
               STRING, array(text(), nullable=True)),
    _telemetry("samples", "NVML samples taken in the window", INT64, _COUNT),
    _telemetry("interval_s", "sampling interval"),
    _telemetry("window_s", "the sampled window"),
    _telemetry("min_window_s", "the shortest window NVML can resolve here"),
    _telemetry("valid", "false when the window was too short for NVML to resolve", BOOL,
               boolean(nullable=True)),
    _telemetry("invalid_reason", "why the window is not valid", STRING, _OPTIONAL_TEXT),
    _telemetry("gpu_name", "the sampled GPU's name", STRING, _OPTIONAL_TEXT),
    _telemetry("nvml_device", "the sampled NVML device (index or UUID)", STRING,
               text_or_integer(nullable=True)),
    _telemetry("util_sample_period_s", "NVML's utilisation sample period"),
    _telemetry("util_sample_period_source", "where that period came from", STRING, _OPTIONAL_TEXT),
    _telemetry("transient_read_errors", "NVML reads that failed and were retried", INT64, _COUNT),
    _telemetry("sampler_error", "why the sampler stopped early", STRING, _OPTIONAL_TEXT),
)
#: Telemetry keys that are data but no column (per-field reasons, the sample timeline).
TELEMETRY_NESTED_RULES: Mapping[str, Rule] = {"unsupported": mapping(text(), nullable=True)}


def _note(key: str, description: str, kind: str, rule: Rule | None = None) -> Column:
    return Column(key=key, kind=kind, description=description, rule=rule)


#: The notes in `extra` that bigtrain's protocols and builders write. Only the first few have a
#: rule of their own; the others (like any key a plugin adds) may be any strict JSON. Counts among
#: them are float64 columns, as Parquet files written before this table typed them.
EXTRA_COLUMNS: tuple[Column, ...] = (
    _note("warmup_settled", "whether step time settled before the window", BOOL,
          boolean(nullable=True)),
    _note("peak_rss_method", "how peak RSS was read", STRING, _OPTIONAL_TEXT),
    _note("flops_convention", "what flops_per_step counts", STRING, _OPTIONAL_TEXT),
    _note("host_sync_reason", "why the step synchronises with the host", STRING, _OPTIONAL_TEXT),
    _note("cudnn_benchmark", "whether cuDNN autotuning was on", BOOL),
    _note("host_syncs_per_step", "host synchronisations one step makes", FLOAT64),
    _note("torchvision_ops", "why torchvision's C++ operators were not loaded (tv: models)", STRING),
    _note("attention_implementation", "the attention kernel of an hf: model", STRING),
    _note("attention_fallback_reason", "why an hf: model fell back to another attention", STRING),
    _note("phase_times", "why phases were not timed apart", STRING),
    _note("clock_events_made_in_window", "timing events created inside the window", FLOAT64),
    _note("converge_task", "the converge cell's task", STRING),
    _note("epochs", "epochs a converge cell trained", FLOAT64),
    _note("evaluations", "held-out evaluations a converge cell ran", FLOAT64),
    _note("train_samples", "training samples of the converge task", FLOAT64),
    _note("eval_samples", "held-out samples of the converge task", FLOAT64),
    _note("energy_to_target_reason", "why energy_to_target_j is null", STRING),
)


def _step_median(record: Any) -> float | None:
    return record.step_time_s.median if record.step_time_s else None


def _per_step_throughput(record: Any) -> tuple[float, ...]:
    if not record.items_per_step:
        return ()
    return tuple(record.items_per_step / s for s in record.step_times_s if s > 0)


def _optimizer_time(record: Any) -> float | None:
    return record.phase_time_s.optimizer if record.phase_time_s else None


def _optimizer_steps(record: Any) -> tuple[float, ...]:
    return tuple((record.phase_times_s or {}).get("optimizer", ()))


def _energy_per_step(record: Any) -> float | None:
    """Energy per step in joules from the telemetry; None for a window NVML could not resolve."""
    telemetry = record.telemetry or {}
    per_step = telemetry.get("joules_per_step")
    if telemetry.get("valid") is False or not isinstance(per_step, (int, float)):
        return None
    return float(per_step)


def _steps_to_target(record: Any) -> float | None:
    return None if record.steps_to_target is None else float(record.steps_to_target)


_GATED = frozenset({FRAME, COMPARE, EXPORT})
_STATS_KEYS = ("median", "mean", "p10", "p90", "iqr")
_PHASES = ("forward", "backward", "optimizer")

#: Every field of a CellRecord, in record order. The axes go after `AXES_AFTER`.
RECORD_FIELDS: tuple[Field, ...] = (
    # -- identity ---------------------------------------------------------------------------------
    Field(name="schema_version", annotation="int", rule=integer(minimum=1),
          default=SCHEMA_VERSION, description="the result contract's version"),
    Field(name="run_id", annotation="str", rule=text(), default=REQUIRED, kind=STRING,
          shows=frozenset({FRAME}), description="the run the record belongs to"),
    Field(name="cell_id", annotation="str", rule=text(), default=REQUIRED, kind=STRING,
          shows=frozenset({FRAME}), description="stable id of the cell's axes"),
    Field(name="repeat", annotation="int", rule=integer(minimum=0), default=0, kind=INT64,
          shows=frozenset({FRAME}), description="which repeat of the cell, from 0"),
    # (the axes of bigtrain.cells.axes.AXIS_TABLE go here)
    # -- outcome ----------------------------------------------------------------------------------
    Field(name="status", annotation="str", rule=choice(STATUSES), default=REQUIRED, kind=STRING,
          shows=frozenset({FRAME}), description="ok, or how the cell failed or why it did not run"),
    _measure("reason", "str | None", _OPTIONAL_TEXT, "why the status is not ok", kind=STRING,
             shows=frozenset({FRAME})),
    _measure("traceback_tail", "str | None", _OPTIONAL_TEXT, "the end of a failed cell's traceback"),
    _measure("started_at", "str | None", timestamp(nullable=True), "when the cell started (UTC)",
             kind=TIMESTAMP, shows=frozenset({FRAME})),
    _measure("ended_at", "str | None", timestamp(nullable=True), "when the cell ended (UTC)"),
    _measure("device_name", "str | None", _OPTIONAL_TEXT, "the device's own name",
             kind=STRING, shows=frozenset({FRAME})),
    _measure("worker_pid", "int | None", _COUNT, "the worker process that measured the cell"),
    # where it ran: the host name of the machine, and the cluster's id of the node (a cluster
    # executor such as `ray`; null for `local`). Null on records written before the fields.
    _measure("host", "str | None", _OPTIONAL_TEXT, "host name of the machine that ran the cell"),
    _measure("node_id", "str | None", _OPTIONAL_TEXT, "the cluster's id of the node that ran it",
             kind=STRING, shows=frozenset({FRAME})),
    # -- timing -----------------------------------------------------------------------------------
    _measure("step_time_s", "StepTimeStats | None",
             obj({"median": _TIME_S, "mean": _TIME_S, "p10": _TIME_S, "p90": _TIME_S,
                  "iqr": number(minimum=0), "n": integer(minimum=1)}, nullable=True, closed=True),
             "summary of the measured step times", unit="s", shows=_GATED,
             columns=(*(Column(key=k, name=f"step_time_{k}_s", kind=FLOAT64, unit="s",
                               description=f"{k} of the measured step times")
                        for k in _STATS_KEYS),
                      Column(key="n", name="step_time_n", kind=INT64,
                             description="measured steps")),
             gates=(Gate(name="step_time", label="step time", direction=LOWER, unit="s",
                         record_field="step_time_s.median", value=_step_median,
                         steps=lambda r: r.step_times_s, position=0),)),
    Field(name="step_times_s", annotation="tuple[float, ...]", rule=numbers(above=0, nullable=True),
          default=(), unit="s", kind=FLOAT64_LIST, shows=frozenset({FRAME}),
          description="every measured step time, in order"),
    _measure("phase_time_s", "PhaseTimes | None",
             obj({p: number(minimum=0) for p in _PHASES}, nullable=True, closed=True),
             "median time of each phase of a step", unit="s", shows=_GATED,
             columns=tuple(Column(key=p, name=f"phase_{p}_s", kind=FLOAT64, unit="s",
                                  description=f"median {p} phase of a step") for p in _PHASES),
             gates=(Gate(name="optimizer_time", label="optimizer step", direction=LOWER, unit="s",
                         record_field="phase_time_s.optimizer", value=_optimizer_time,
                         steps=_optimizer_steps, position=2),)),
    _measure("warmup_steps", "int | None", _COUNT, "steps run before the window", kind=INT64,
             shows=frozenset({FRAME})),
    _measure("warmup_s", "float | None", _SPAN_S, "time spent warming up", unit="s", kind=FLOAT64,
             shows=frozenset({FRAME})),
    _measure("window_s", "float | None", _SPAN_S, "the measured window", unit="s", kind=FLOAT64,
             shows=frozenset({FRAME})),
    # -- throughput -------------------------------------------------------------------------------
    _measure("items_per_s", "float | None", _AMOUNT, "training items (samples or tokens) per second",
             unit="items/s", direction=HIGHER, label="throughput", kind=FLOAT64, shows=_GATED,
             gates=(Gate(name="items_per_s", label="throughput", direction=HIGHER, unit="items/s",
                         steps=_per_step_throughput, position=1),)),
    _measure("item_unit", "str | None", _OPTIONAL_TEXT, "what an item is: samples or tokens",
             kind=STRING, shows=frozenset({FRAME})),
    _measure("items_per_step", "int | None", _COUNT, "items one step trains on", kind=FLOAT64,
             shows=frozenset({FRAME})),
    _measure("param_count", "int | None", _COUNT, "the model's parameters", kind=INT64,
             shows=frozenset({FRAME})),
    # -- memory -----------------------------------------------------------------------------------
    _measure("peak_mem_allocated_bytes", "int | None", _COUNT,
             "peak device memory held by tensors (torch)", unit="bytes", direction=LOWER,
             label="peak memory allocated", kind=FLOAT64, shows=_GATED | {REPORT},
             report_label="allocated (MiB)",
             gates=(Gate(name="peak_mem", label="peak memory allocated", direction=LOWER,
                         unit="bytes", kind=STEADY, position=3),)),
    _measure("peak_mem_reserved_bytes", "int | None", _COUNT,
             "peak device memory the caching allocator held", unit="bytes", direction=LOWER,
             kind=FLOAT64, shows=frozenset({FRAME, REPORT}), report_label="reserved (MiB)"),
    _measure("peak_rss_bytes", "int | None", _COUNT, "peak resident memory of the process",
             unit="bytes", direction=LOWER, label="peak host RSS", kind=FLOAT64,
             shows=_GATED | {REPORT}, report_label="RSS (MiB)",
             gates=(Gate(name="peak_rss", label="peak host RSS", direction=LOWER, unit="bytes",
                         kind=STEADY, position=4),)),
    _measure("optimizer_state_bytes", "int | None", _COUNT,
             "bytes held by the optimizer's own state tensors (momentum buffers, Adam's moments "
             "and step counters) once the first step has made them; null where not measured",
             unit="bytes", direction=LOWER, label="optimizer state", kind=INT64,
             shows=_GATED | {REPORT}, report_label="optimizer state (MiB)",
             gates=(Gate(name="optimizer_state", label="optimizer state", direction=LOWER,
                         unit="bytes", kind=STEADY),)),
    # -- training sanity --------------------------------------------------------------------------
    _measure("loss_first", "float | None", number(nullable=True), "loss of the first step",
             kind=FLOAT64, shows=frozenset({FRAME})),
    _measure("loss_last", "float | None", number(nullable=True), "loss of the last step",
             kind=FLOAT64, shows=frozenset({FRAME})),
    # -- hardware telemetry (NVML); null with a reason where unavailable --------------------------
    _measure("telemetry", "Mapping[str, Any] | None",
             mapping(value_rule=lambda key: _TELEMETRY_RULE_BY_KEY.get(key) or _telemetry_rule(key),
                     nullable=True),
             "NVML figures over the window", prefix="telemetry_", columns=TELEMETRY_COLUMNS,
             shows=_GATED,
             gates=(Gate(name="energy_per_step", label="energy per step", direction=LOWER,
                         unit="J", record_field="telemetry.joules_per_step",
                         value=_energy_per_step, position=5),)),
    _measure("telemetry_reason", "str | None", _OPTIONAL_TEXT, "why there is no telemetry",
             kind=STRING, shows=frozenset({FRAME})),
    # -- the host's load over the timed window (bigtrain.measure.host_load) ------------------------
    _measure("host_load", "Mapping[str, Any] | None",
             obj({"loadavg_1m": _AMOUNT, "other_cpu_s": number(minimum=0),
                  "other_cpu_cores": number(minimum=0), "steal_pct": _AMOUNT,
                  "gpu_other_processes": _COUNT, "cores": integer(minimum=1),
                  "cores_used": integer(minimum=1), "busy": boolean()}, nullable=True),
             "what else ran on the host (and its GPU) during the timed window; null where not "
             "measured (data-parallel and converge cells, older records)",
             prefix="host_", shows=frozenset({FRAME}), columns=HOST_LOAD_COLUMNS),
    # -- FLOPs and model FLOPs utilisation --------------------------------------------------------
    _measure("flops_per_step", "float | None", _AMOUNT, "FLOPs of one training step",
             unit="FLOP", kind=FLOAT64, shows=frozenset({FRAME})),
    _measure("achieved_tflops", "float | None", _AMOUNT, "FLOPs per step over the median step",
             unit="TFLOP/s", direction=HIGHER, kind=FLOAT64, shows=frozenset({FRAME}),
             hardware_reason=True),
    _measure("mfu_pct", "float | None", _AMOUNT, "achieved over the datasheet peak", unit="%",
             direction=HIGHER, kind=FLOAT64, shows=frozenset({FRAME}), hardware_reason=True),
    _measure("mfu_peak_tflops", "float | None", number(above=0, nullable=True),
             "the datasheet peak MFU is against", unit="TFLOP/s", kind=FLOAT64,
             shows=frozenset({FRAME})),
    _measure("mfu_peak_source", "str | None", _OPTIONAL_TEXT, "where that peak comes from"),
    # -- against this machine's calibration (`bigbench calibrate`), the optimizer's bandwidth floor
    _measure("measured_peak_tflops", "float | None", number(above=0, nullable=True),
             "this machine's calibrated matmul rate", unit="TFLOP/s", kind=FLOAT64,
             shows=frozenset({FRAME})),
    _measure("pct_of_measured_peak", "float | None", _AMOUNT, "achieved over the calibrated peak",
             unit="%", direction=HIGHER, kind=FLOAT64, shows=frozenset({FRAME}),
             hardware_reason=True),
    _measure("optimizer_bytes_per_step", "int | None", _COUNT,
             "memory traffic of one optimizer step (model)", unit="bytes", kind=FLOAT64,
             shows=frozenset({FRAME})),
    _measure("optimizer_floor_s", "float | None", _SPAN_S,
             "that traffic at the calibrated copy bandwidth", unit="s", kind=FLOAT64,
             shows=frozenset({FRAME}), hardware_reason=True),
    _measure("optimizer_floor_ratio", "float | None", _AMOUNT,
             "the optimizer phase over its bandwidth floor", unit="x", direction=LOWER,
             kind=FLOAT64, shows=frozenset({FRAME}), hardware_reason=True),
    _measure("calibration_id", "str | None", _OPTIONAL_TEXT, "the calibration the cell used",
             kind=STRING, shows=frozenset({FRAME})),
    _measure("hardware_reasons", "Mapping[str, str] | None", mapping(text(), nullable=True),
             "why a hardware metric is null, keyed by field", shows=frozenset({FRAME}),
             prefix="hw_reason_"),  # columns: one per field with hardware_reason (see below)
    # every measured step's phases, {forward, backward, optimizer}: lists in step order
    _measure("phase_times_s", "Mapping[str, Sequence[float]] | None",
             mapping(numbers(minimum=0), nullable=True), "every measured step's phases",
             unit="s"),
    _measure("workload_version", "str | None", _OPTIONAL_TEXT,
             "the measured workload definition's stamp"),
    # -- time to target (`bigbench converge`); None/empty on step-time records --------------------
    Field(name="protocol", annotation="str", rule=choice(PROTOCOLS), default="step_time",
          kind=STRING, shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL,
          description="step_time or converge"),
    _measure("seed", "int | None", integer(minimum=0, nullable=True),
             "the training seed (converge: one per repeat)", kind=INT64, shows=frozenset({FRAME}),
             protocol=CONVERGE_PROTOCOL),
    _measure("lr_used", "float | None", number(above=0, nullable=True),
             "the learning rate actually used (the lr axis resolved)", kind=FLOAT64,
             shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL),
    _measure("target_metric", "str | None", _OPTIONAL_TEXT,
             "the held-out quantity the target is on", kind=STRING, shows=frozenset({FRAME}),
             protocol=CONVERGE_PROTOCOL),
    _measure("target_value", "float | None", number(nullable=True), "the target",
             kind=FLOAT64, shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL),
    _measure("target_direction", "str | None", choice(("max", "min"), nullable=True),
             "max: higher is better; min: lower is better", kind=STRING, shows=frozenset({FRAME}),
             protocol=CONVERGE_PROTOCOL),
    _measure("steps_to_target", "int | None", _COUNT,
             "optimizer steps until the first evaluation at target", unit="steps",
             direction=LOWER, kind=INT64, shows=_GATED, protocol=CONVERGE_PROTOCOL,
             gates=(Gate(name="steps_to_target", label="steps to target", direction=LOWER,
                         unit="steps", value=_steps_to_target, position=7),)),
    _measure("time_to_target_s", "float | None", _SPAN_S,
             "wall seconds for those steps, data loading included, compilation not (compile_s)",
             unit="s", direction=LOWER,
             kind=FLOAT64, shows=_GATED, protocol=CONVERGE_PROTOCOL,
             gates=(Gate(name="time_to_target_s", label="time to target", direction=LOWER,
                         unit="s", position=6),)),
    _measure("energy_to_target_j", "float | None", _AMOUNT,
             "GPU energy for those steps (NVML), None on CPU", unit="J", direction=LOWER,
             kind=FLOAT64, shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL),
    _measure("data_time_s", "float | None", _SPAN_S, "of the time spent, the loader's share",
             unit="s", kind=FLOAT64, shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL),
    _measure("eval_time_s", "float | None", _SPAN_S,
             "held-out evaluations: excluded from time_to_target_s", unit="s", kind=FLOAT64,
             shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL),
    _measure("best_value", "float | None", number(nullable=True),
             "best held-out target metric seen", kind=FLOAT64, shows=frozenset({FRAME}),
             protocol=CONVERGE_PROTOCOL),
    _measure("final_value", "float | None", number(nullable=True),
             "held-out target metric at the last evaluation", kind=FLOAT64,
             shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL),
    _measure("final_eval_loss", "float | None", number(nullable=True),
             "held-out loss at the last evaluation", kind=FLOAT64, shows=frozenset({FRAME}),
             protocol=CONVERGE_PROTOCOL),
    # {step, wall_s, train_loss, eval_loss, eval_metric}: equal-length lists, one per evaluation
    _measure("curve", "Mapping[str, Sequence[float]] | None", mapping(numbers(), nullable=True),
             "the converge cell's evaluations"),
    # -- data-parallel cells (world_size > 1, bigtrain.run.distributed); None otherwise -----------
    # The cell's step_time_s/step_times_s are the slowest rank's; items_per_s counts all ranks.
    _measure("rank_step_time_s", "Sequence[float] | None", numbers(above=0, nullable=True),
             "each rank's median step time, rank order", unit="s"),
    _measure("no_sync_step_time_s", "float | None", number(above=0, nullable=True),
             "the slowest rank's median step with no all-reduce", unit="s"),
    _measure("comm_share_pct", "float | None", _AMOUNT,
             "100 * (1 - no_sync / synced median): communication", unit="%"),
    _measure("dist_backend", "str | None", choice(DIST_BACKENDS, nullable=True),
             "the torch.distributed backend: nccl (GPUs) or gloo (CPU)"),
    # -- bigbench fit (issue 26): the largest batch that trains; None on other records ---------------
    # Every probe of the search is an ordinary record of its cell (repeat 0); the search's answer
    # is measured once more at the batch found (repeat 1, role `max`). A probe over a stated
    # --memory-budget is status `oom`, its reason naming the peak and the budget.
    _measure("fit_group", "str | None", _OPTIONAL_TEXT,
             "the fit search the record belongs to: its cell's axes less the batch size",
             kind=STRING, shows=frozenset({FRAME})),
    _measure("fit_role", "str | None", choice(("probe", "max"), nullable=True),
             "probe: one step of the search; max: the batch it found, measured again",
             kind=STRING, shows=frozenset({FRAME})),
    _measure("fit_probe_index", "int | None", _COUNT, "the probe's place in its search, from 0",
             kind=INT64, shows=frozenset({FRAME})),
    _measure("fit_memory_budget_bytes", "int | None", _COUNT,
             "the budget the peak was checked against (--memory-budget); null: the device's own "
             "memory (a real out-of-memory)", unit="bytes", kind=INT64, shows=frozenset({FRAME})),
    _measure("fit_checked_peak", "str | None", _OPTIONAL_TEXT,
             "which recorded peak the budget was checked against (peak_rss_bytes on the CPU, "
             "peak_mem_reserved_bytes on CUDA)", kind=STRING, shows=frozenset({FRAME})),
    _measure("fit_memory_fraction", "float | None", number(above=0, nullable=True),
             "the share of CUDA memory the worker was capped to (--memory-fraction)",
             kind=FLOAT64, shows=frozenset({FRAME})),
    _measure("fit_fail_batch_size", "int | None", _COUNT,
             "on the max record: the smallest batch size found not to fit (null: none did)",
             kind=INT64, shows=frozenset({FRAME})),
    _measure("fit_stop", "str | None", _OPTIONAL_TEXT,
             "on the max record: why the search ended (boundary, batch_max, probe_limit, "
             "probe_failed)", kind=STRING, shows=frozenset({FRAME})),
    # -- learning-rate tuning (`bigbench converge --tune-lr N`, issue 25); None on other records --
    # Each trial is an ordinary converge record (repeat 0, the spec's seed) at one lr of its
    # group's search; the lr chosen is trained again from fresh seeds (repeats 1.., role `final`).
    # Trials are kept in the run and the frame but left out of gates and tables of results.
    _measure("tune_role", "str | None", choice(TUNE_ROLES, nullable=True),
             "trial: one lr of the search (excluded from gates and leaderboards); final: the lr "
             "chosen, trained again from a fresh seed", kind=STRING, shows=frozenset({FRAME}),
             protocol=CONVERGE_PROTOCOL),
    _measure("tune_group", "str | None", _OPTIONAL_TEXT,
             "the lr search the record belongs to: its cell's axes less the lr", kind=STRING,
             shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL),
    _measure("tune_trial_index", "int | None", _COUNT,
             "the trial's place in its search, from 0 (run order)", kind=INT64,
             shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL),
    _measure("tuned_lr", "float | None", number(above=0, nullable=True),
             "on final records: the lr the search chose", kind=FLOAT64, shows=frozenset({FRAME}),
             protocol=CONVERGE_PROTOCOL),
    _measure("tuning_cost_s", "float | None", _SPAN_S,
             "on final records: training plus evaluation seconds of every trial of the search",
             unit="s", direction=LOWER, kind=FLOAT64, shows=frozenset({FRAME}),
             protocol=CONVERGE_PROTOCOL),
    _measure("tuning_cost_j", "float | None", _AMOUNT,
             "on final records: GPU energy of every trial (NVML); null where a trial has none",
             unit="J", direction=LOWER, kind=FLOAT64, shows=frozenset({FRAME}),
             protocol=CONVERGE_PROTOCOL),
    _measure("tune_trials", "int | None", _COUNT,
             "on final records: trials the search ran (of tune_trials_planned)", kind=INT64,
             shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL),
    _measure("tune_trials_planned", "int | None", _COUNT, "on final records: --tune-lr N",
             kind=INT64, shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL),
    _measure("tune_budget_s", "float | None", number(above=0, nullable=True),
             "the search's --tune-budget-s (null: none)", unit="s", kind=FLOAT64,
             shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL),
    _measure("tune_stop", "str | None", choice(("all_trials", "budget"), nullable=True),
             "on final records: why the search ended (all_trials ran, or the budget was spent)",
             kind=STRING, shows=frozenset({FRAME}), protocol=CONVERGE_PROTOCOL),
    # -- memory levers (issue 26: checkpointing, grad_accum, parallel); None where not measured ---
    # Filled on step-time records (bigtrain.run.measured, bigtrain.run.distributed). Additive keys
    # with None defaults: records written before them read unchanged (no schema bump).
    _measure("micro_batch_size", "int | None", integer(minimum=1, nullable=True),
             "samples one forward/backward pass takes on one rank: batch_size / grad_accum",
             kind=INT64, shows=frozenset({FRAME})),
    _measure("samples_per_optimizer_step", "int | None", integer(minimum=1, nullable=True),
             "samples one optimizer step trains on, over all ranks: batch_size * world_size",
             kind=INT64, shows=frozenset({FRAME})),
    _measure("samples_per_s", "float | None", _AMOUNT,
             "samples (not tokens) trained per second over all ranks: samples_per_optimizer_step "
             "/ median step time (a step is one optimizer step)", unit="samples/s",
             direction=HIGHER, kind=FLOAT64, shows=frozenset({FRAME})),
    _measure("peak_memory_per_sample_bytes", "float | None", _AMOUNT,
             "the cell's peak memory (allocated on CUDA, RSS on the CPU; the slowest rank's own "
             "for data-parallel cells) over the samples one rank trains per optimizer step "
             "(batch_size)", unit="bytes", direction=LOWER, kind=FLOAT64,
             shows=frozenset({FRAME})),
    _measure("recompute_share_pct", "float | None", _AMOUNT,
             "checkpointed cells: 100 * (median backward phase - that of a companion window with "
             "checkpointing paused) / median step: the step's share spent recomputing "
             "activations", unit="%", direction=LOWER, kind=FLOAT64, shows=frozenset({FRAME})),
    _measure("rank_peak_mem_bytes", "Sequence[int] | None", numbers(minimum=0, nullable=True),
             "data-parallel cells: each rank's peak memory (allocated on CUDA, RSS on the CPU), "
             "rank order", unit="bytes"),
    # -- profiled cells (issue 24: `bigbench profile`, `sweep --profile`); None where not profiled
    # Filled by bigtrain.measure.profile_cell after the timed window; the artifacts' contract is
    # bigtrain.profiles.load. Additive keys with None defaults: older records read unchanged (and
    # a None here sends bigtrain.profiles.load to the record's `extra`, where they once lived).
    _measure("profile_status", "str | None", choice(PROFILE_STATUSES, nullable=True),
             "none: not asked; ok: profiled; failed: the profiled window failed (the timing "
             "stands); unsupported: this cell cannot be profiled", kind=STRING,
             shows=frozenset({FRAME})),
    _measure("profile_reason", "str | None", _OPTIONAL_TEXT,
             "why the cell's profile failed or is unsupported", kind=STRING,
             shows=frozenset({FRAME})),
    _measure("profile_path", "str | None", text(nullable=True),
             "the cell's profile folder, relative to the run folder (profiles/<cell_id>)",
             kind=STRING, shows=frozenset({FRAME})),
    _measure("profile_summary", "Mapping[str, Any] | None", mapping(nullable=True),
             "top ops, shares of op time by category and by phase, launches per step by phase "
             "(the profile's summary.json, compact)"),
    # -- end of the profiled-cells block ----------------------------------------------------------
    # == optimizers and memory anatomy (issue 25) =================================================
    # Filled on measured records (bigtrain.run.measured from bigtrain.measure.anatomy and
    # bigtrain.training.optim). Additive keys with None defaults: older records read unchanged.
    _measure("optimizer_package", "str | None", _OPTIONAL_TEXT,
             "the package the optimizer's code comes from (torch, or the optimizers extra's "
             "schedulefree, lion-pytorch, heavyball, torchao; a plugin's own)", kind=STRING,
             shows=frozenset({FRAME})),
    _measure("optimizer_package_version", "str | None", _OPTIONAL_TEXT,
             "that package's installed version", kind=STRING, shows=frozenset({FRAME})),
    _measure("param_bytes", "int | None", _COUNT,
             "bytes of the model's distinct parameter tensors (a tied weight once; a sharded "
             "rank's own shard)", unit="bytes", direction=LOWER, kind=INT64,
             shows=frozenset({FRAME, REPORT}), report_label="parameters (MiB)"),
    _measure("grad_bytes", "int | None", _COUNT,
             "bytes of the gradients backward allocates: one per trainable parameter, in its "
             "dtype", unit="bytes", direction=LOWER, kind=INT64,
             shows=frozenset({FRAME, REPORT}), report_label="gradients (MiB)"),
    _measure("optimizer_state_dtype_bytes", "Mapping[str, int] | None",
             mapping(integer(minimum=0), nullable=True),
             "optimizer_state_bytes by dtype (float32, bfloat16, uint8, ...): tensor subclasses "
             "(8-bit state) opened to their codes and scales, each storage once", unit="bytes",
             shows=frozenset({FRAME}), prefix="optimizer_state_bytes_",
             columns=tuple(Column(key=d, kind=FLOAT64, unit="bytes",
                                  description=f"optimizer state held in {d}")
                           for d in ("float32", "bfloat16", "float16", "uint8", "int8"))),
    _measure("optimizer_state_ratio", "float | None", _AMOUNT,
             "optimizer_state_bytes / param_bytes: Adam/AdamW 2 (+ step counters), SGD with "
             "momentum 1, Adafactor far below 1, 8-bit AdamW about 0.5", unit="x",
             direction=LOWER, kind=FLOAT64, shows=frozenset({FRAME})),
    _measure("activation_bytes", "int | None", _COUNT,
             "activation memory, estimated per activation_method: on CUDA the peak allocated "
             "memory minus parameters, gradients and optimizer state; on the CPU (whose RSS holds "
             "the interpreter and libraries) the bytes autograd saves for backward in one forward "
             "of one micro-batch, each storage once, parameters and the batch left out; null for "
             "a compiled model or a data-parallel rank on the CPU", unit="bytes",
             direction=LOWER, kind=INT64,
             shows=frozenset({FRAME, REPORT, COMPARE}), report_label="activations (MiB)",
             gates=(Gate(name="activation_mem", label="activation memory", direction=LOWER,
                         unit="bytes", kind=STEADY),)),
    _measure("activation_method", "str | None", _OPTIONAL_TEXT,
             "how activation_bytes was estimated", kind=STRING, shows=frozenset({FRAME})),
    _measure("muon_params", "int | None", _COUNT,
             "muon cells: parameters (elements) Muon updates: hidden nn.Linear matrices",
             kind=INT64, shows=frozenset({FRAME})),
    _measure("muon_adamw_params", "int | None", _COUNT,
             "muon cells: parameters in its AdamW group: embeddings, head, biases, norms",
             kind=INT64, shows=frozenset({FRAME})),
    # == end of issue 25's block ===================================================================
    # -- frameworks (issue 28: jax, tensorflow cells; bigtrain.run.measured.framework_record) -----
    # The `framework` axis itself is a record field through the axis table. None on torch cells,
    # whose versions are in the manifest's environment and whose FLOPs are torch's own count.
    _measure("framework_version", "str | None", _OPTIONAL_TEXT,
             "the version of the framework that ran the cell (jax 0.10.2, tensorflow 2.21.0)",
             kind=STRING, shows=frozenset({FRAME})),
    _measure("framework_versions", "Mapping[str, str] | None", mapping(text(), nullable=True),
             "the framework's packages, backend and device kind (jaxlib, flax, optax, keras)"),
    _measure("flops_source", "str | None", choice(FLOPS_SOURCES, nullable=True),
             "where flops_per_step came from: the framework's compiled cost analysis, or the "
             "torch twin's count", kind=STRING, shows=frozenset({FRAME})),
    _measure("framework_threads", "Mapping[str, Any] | None", mapping(nullable=True),
             "the thread settings in force in the framework's worker (XLA flags, TF intra/inter "
             "op threads)"),
    _measure("compile_s", "float | None", _SPAN_S,
             "seconds spent compiling the step, outside the timed window or the time to target "
             "(jax.jit, tf.function; in converge cells torch.compile and self-compiling "
             "optimizers)", unit="s", kind=FLOAT64, shows=frozenset({FRAME})),
    # -- anything else a workload or a later version wants to say ---------------------------------
    Field(name="extra", annotation="Mapping[str, Any]",
          rule=mapping(value_rule=lambda key: _EXTRA_RULE_BY_KEY.get(key) or ANY_FINITE_JSON,
                       nullable=True),
          default_factory=dict, description="notes of the protocol, builders and plugins",
          prefix="extra_", columns=EXTRA_COLUMNS, shows=frozenset({FRAME})),
)
#: The axes of bigtrain.cells.axes.AXIS_TABLE sit in a record right after this field.
AXES_AFTER = "repeat"

_TELEMETRY_RULE_BY_KEY: Mapping[str, Rule] = {
    **{c.key: c.rule for c in TELEMETRY_COLUMNS if c.rule is not None},
    **TELEMETRY_NESTED_RULES,
}
_EXTRA_RULE_BY_KEY: Mapping[str, Rule] = {c.key: c.rule for c in EXTRA_COLUMNS if c.rule is not None}
FIELD_BY_NAME: Mapping[str, Field] = {f.name: f for f in RECORD_FIELDS}


def _check_table() -> None:
    names = [f.name for f in RECORD_FIELDS]
    if len(set(names)) != len(names):
        raise ValueError(f"a field is declared twice: {sorted(n for n in names if names.count(n) > 1)}")
    gates = [g.name for f in RECORD_FIELDS for g in f.gates]
    if len(set(gates)) != len(gates):
        raise ValueError(f"a compare metric is declared twice: {gates}")


_check_table()


# -- what derives from the table -----------------------------------------------------------------
def frame_fields() -> tuple[Field, ...]:
    """Fields that are frame columns, in record order."""
    return tuple(f for f in RECORD_FIELDS if FRAME in f.shows)


def hardware_reason_fields() -> tuple[str, ...]:
    """Fields that may be null with a reason in `hardware_reasons` (-> `hw_reason_<name>`)."""
    return tuple(f.name for f in RECORD_FIELDS if f.hardware_reason)


def report_fields() -> tuple[Field, ...]:
    """Fields the report's memory table shows, in record order."""
    return tuple(f for f in RECORD_FIELDS if REPORT in f.shows)


def field_gates() -> tuple[tuple[Field, Gate], ...]:
    """(field, gate) for every compare metric, in compare order."""
    pairs = [(f, g) for f in RECORD_FIELDS if COMPARE in f.shows for g in f.gates]
    order = {id(g): i for i, (_, g) in enumerate(pairs)}
    return tuple(sorted(pairs, key=lambda pair: (pair[1].position, order[id(pair[1])])))


@dataclass(frozen=True, kw_only=True)
class KnownColumn:
    """A column of the results frame (and of every Parquet file) with its kind and metadata."""

    name: str
    kind: str
    unit: str = ""
    description: str = ""


def record_columns(axis_columns: tuple[KnownColumn, ...] = ()) -> tuple[KnownColumn, ...]:
    """Every column a record can give the frame, in frame order: identity, the axes (given by the
    caller from bigtrain.cells.axes), then each frame field's column(s)."""
    out: list[KnownColumn] = []
    for f in frame_fields():
        if f.name == "hardware_reasons":
            out += [KnownColumn(name=f"{f.prefix}{name}", kind=STRING,
                                description=f"why {name} is null") for name in hardware_reason_fields()]
        elif f.columns:
            out += [KnownColumn(name=c.name or f"{f.prefix}{c.key}", kind=c.kind, unit=c.unit,
                                description=c.description) for c in f.columns]
        else:
            out.append(KnownColumn(name=f.name, kind=f.kind or STRING, unit=f.unit,
                                   description=f.description))
        if f.name == AXES_AFTER:
            out += axis_columns
        if f.name == "node_id":  # the host of a cluster node, where one ran the cell
            out.append(KnownColumn(name="node_host", kind=STRING,
                                   description="host name of the cluster node that ran the cell"))
    return tuple(out)


#: Frame columns that come from the run, not the record (bigtrain.results.frame adds them).
RUN_COLUMNS: tuple[KnownColumn, ...] = (
    KnownColumn(name="run_path", kind=STRING, description="the run folder the row was read from"),
    KnownColumn(name="machine", kind=STRING, description="the GPU (else CPU) and host of the run"),
    KnownColumn(name="host", kind=STRING, description="host name that ran the cell"),
    KnownColumn(name="gpu_name", kind=STRING, description="the run's GPU names, comma-joined"),
    KnownColumn(name="driver_version", kind=STRING, description="NVIDIA driver"),
    KnownColumn(name="torch_version", kind=STRING, description="torch"),
    KnownColumn(name="cuda_version", kind=STRING, description="CUDA torch was built with"),
    KnownColumn(name="run_started_at", kind=TIMESTAMP, description="when the run started (UTC)"),
    KnownColumn(name="run_state", kind=STRING, description="running, complete or interrupted"),
    KnownColumn(name="run_ended_at", kind=TIMESTAMP, description="when the run ended (UTC)"),
    KnownColumn(name="cpu_model", kind=STRING, description="the run's CPU"),
    KnownColumn(name="gpu_count", kind=INT64, description="GPUs the run saw"),
    KnownColumn(name="torch_num_threads", kind=INT64, description="torch's intra-op threads"),
)


def known_columns() -> tuple[KnownColumn, ...]:
    """Every column bigtrain itself writes to the results frame, in order: the record's (the axes
    from bigtrain.cells.axes.AXIS_TABLE after `repeat`), then the run's. Parquet files carry all of them,
    null where a run has no value, so any set of files reads as one table."""
    # Imported here: bigtrain.cells.axes is pure Python too, but the field table itself needs no axes.
    from bigtrain.cells.axes import AXIS_TABLE

    axes = tuple(KnownColumn(name=a.name, kind=INT64 if a.record_type is int else STRING,
                             description=f"the {a.name} axis ({a.help})") for a in AXIS_TABLE)
    return (*record_columns(axes), *RUN_COLUMNS)
