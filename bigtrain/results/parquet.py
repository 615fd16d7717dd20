"""The one Parquet writer of the tidy results frame (`bigbench export --format parquet` and a
report's frame.parquet), with one explicit Arrow schema.

Parquet holds one type per column, and several runs' files are only readable together (e.g. with
`pyarrow.dataset`) when the same column has the same type in each. So the type of a column comes
from its name, not from what one run happened to hold:

- known columns have fixed types: identity, axes and text fields are strings; counts are int64;
  metrics are float64 (a metric that is null in a whole run, e.g. device memory on a CPU, stays
  float64); `started_at`, `run_started_at`, `run_ended_at` are UTC timestamps; `step_times_s` is a
  list of float64;
- `hw_reason_*` columns (why a hardware metric is blank) are strings;
- the flattened telemetry and extra fields bigtrain itself writes have fixed types too
  (`telemetry_valid` boolean, `telemetry_invalid_reason` string, ...);
- other flattened, open-ended columns (`telemetry_*`, `extra_*` from plugins or newer writers,
  report-only columns) are typed from their values: booleans stay booleans, numbers become
  float64, text (or a mix of kinds: a telemetry field a number here, text there) becomes strings.
  A column that is null throughout is float64 when its name carries a unit (`_s`, `_bytes`, `_w`,
  `_j`, `_pct`, `_per_s`, ...) and Arrow's null type otherwise, which unifies with any type when
  files are read together.

Analysing side: pandas and pyarrow, never torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bigtrain.results.frame import CONVERGE_FIELDS, SCALAR_METRICS
from bigtrain.results.schema import AXES

STRING = pa.string()
INT = pa.int64()
FLOAT = pa.float64()
BOOL = pa.bool_()
TIMESTAMP = pa.timestamp("us", tz="UTC")
STEP_TIMES = pa.list_(pa.float64())

_TEXT_METRICS = ("calibration_id", "device_name")
_INT_METRICS = ("warmup_steps", "param_count")

#: Columns whose type is fixed whatever one run holds.
COLUMN_TYPES: dict[str, pa.DataType] = {
    **{name: STRING for name in ("run_id", "cell_id", "status", "reason", "item_unit",
                                 "telemetry_reason", "run_path", "machine", "host", "gpu_name",
                                 "driver_version", "torch_version", "cuda_version", "run_state",
                                 "cpu_model", "workload_version", "node_id", "node_host",
                                 *_TEXT_METRICS)},
    **{axis: STRING for axis in AXES if axis not in ("batch_size", "world_size")},
    **{name: INT for name in ("repeat", "batch_size", "world_size", "gpu_count", "torch_num_threads",
                              "step_time_n", *_INT_METRICS)},
    **{name: FLOAT for name in SCALAR_METRICS if name not in (*_TEXT_METRICS, *_INT_METRICS)},
    **{f"step_time_{key}_s": FLOAT for key in ("median", "mean", "p10", "p90", "iqr")},
    **{f"phase_{key}_s": FLOAT for key in ("forward", "backward", "optimizer")},
    **{name: TIMESTAMP for name in ("started_at", "run_started_at", "run_ended_at")},
    "step_times_s": STEP_TIMES,
    # Flattened telemetry and extra fields that the measuring side writes (bigtrain.measure's
    # telemetry dict, protocol notes): typed by name too, since each is null throughout some run
    # (no sampler error, every window valid) and would otherwise have no type there.
    **{f"telemetry_{key}": STRING for key in (
        "energy_method", "invalid_reason", "sampler_error", "gpu_name", "nvml_device",
        "util_sample_period_source", "throttle_reasons_seen")},
    **{f"telemetry_{key}": INT for key in ("samples", "transient_read_errors")},
    "telemetry_valid": BOOL,
    **{f"extra_{key}": STRING for key in ("peak_rss_method", "flops_convention",
                                          "host_sync_reason")},
    "extra_warmup_settled": BOOL,
    # Time-to-target columns (converge records only): fixed too, so a run where no seed reached
    # its target (steps_to_target null throughout) reads together with one where some did.
    **{name: STRING for name in ("protocol", "target_metric", "target_direction")},
    **{name: INT for name in ("seed", "steps_to_target")},
    **{name: FLOAT for name in CONVERGE_FIELDS
       if name not in ("protocol", "target_metric", "target_direction", "seed", "steps_to_target")},
}
#: Column-name prefixes whose columns have one type whatever their ending says.
PREFIX_TYPES: dict[str, pa.DataType] = {"hw_reason_": STRING}  # why a hardware metric is blank
#: Name endings that say a column holds a number (the units our keys carry).
UNIT_SUFFIXES = ("_s", "_bytes", "_w", "_j", "_pct", "_per_s", "_mhz", "_c", "_tflops", "_ratio")


def column_type(name: str, values: pd.Series) -> pa.DataType:
    """The Arrow type of one column of the frame (see the module docstring for the rules)."""
    if name in COLUMN_TYPES:
        return COLUMN_TYPES[name]
    for prefix, kind in PREFIX_TYPES.items():
        if name.startswith(prefix):
            return kind
    present = [v for v in values if not _is_null(v)]
    if not present:
        return FLOAT if name.endswith(UNIT_SUFFIXES) else pa.null()
    if all(isinstance(v, bool) for v in present):
        return BOOL
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return FLOAT
    return STRING


def arrow_schema(frame: pd.DataFrame) -> pa.Schema:
    """The explicit schema the frame is written with, column by column in the frame's order."""
    return pa.schema([pa.field(str(c), column_type(str(c), frame[c])) for c in frame.columns])


def frame_to_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table of `arrow_schema(frame)`, every value cast to its column type."""
    schema = arrow_schema(frame)
    arrays = [_array(frame[field.name], field.type) for field in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_parquet(frame: pd.DataFrame, destination: Path | str | IO[bytes]) -> None:
    """Write the tidy frame (one or many runs) as Parquet, to a path or a binary file."""
    pq.write_table(frame_to_table(frame), destination)


def _array(values: pd.Series, kind: pa.DataType) -> pa.Array:
    items = list(values)
    if kind == STEP_TIMES:
        return pa.array([None if _is_null(v) else [float(x) for x in v] for v in items], kind)
    if kind == TIMESTAMP:
        stamps = pd.to_datetime(pd.Series(items, dtype=object), utc=True, format="ISO8601")
        return pa.array(stamps, kind, from_pandas=True)
    cast: Any
    if kind == STRING:
        cast = str
    elif kind == INT:
        cast = int
    elif kind == FLOAT:
        cast = float
    elif kind == BOOL:
        cast = bool
    else:
        return pa.nulls(len(items), kind)
    return pa.array([None if _is_null(v) else cast(v) for v in items], kind)


def _is_null(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)
