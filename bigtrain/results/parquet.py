"""The one Parquet writer of the tidy results frame (`bigbench export --format parquet` and a
report's frame.parquet), with one explicit Arrow schema.

Parquet holds one type per column, and several runs' files only read as one table (DuckDB's
`'*.parquet'` glob, polars' `read_parquet`, `pyarrow.dataset`) when every file has the same
columns with the same types. So the columns and their types come from the field table
(`bigtrain.results.fields.known_columns`), not from what one run happened to hold:

- every known column is written, always, in the table's order: null where the run has no value (a
  failed cell, a CPU run without telemetry, a step-time run without time-to-target fields);
- each has a fixed type: identity, axes and text fields are strings; counts are int64; metrics are
  float64; `started_at`, `run_started_at`, `run_ended_at` are UTC timestamps; `step_times_s` is a
  list of float64;
- each carries its unit and description as Parquet field metadata (`unit`, `description`);
- other flattened, open-ended columns (`telemetry_*`, `extra_*` from plugins or newer writers,
  report-only columns) follow the known ones, typed from their values: booleans stay booleans,
  numbers become float64, text (or a mix of kinds) becomes strings. A column that is null
  throughout is float64 when its name carries a unit (`_s`, `_bytes`, `_w`, `_j`, `_pct`,
  `_per_s`, ...) and Arrow's null type otherwise, which unifies with any type when files are read
  together. Only these can differ between files.

Analysing side: pandas and pyarrow, never torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bigtrain.results.fields import UNIT_SUFFIXES, KnownColumn, known_columns

STRING = pa.string()
INT = pa.int64()
FLOAT = pa.float64()
BOOL = pa.bool_()
TIMESTAMP = pa.timestamp("us", tz="UTC")
STEP_TIMES = pa.list_(pa.float64())
#: The Arrow type of each column kind of the field table.
ARROW_TYPES: dict[str, pa.DataType] = {"string": STRING, "int64": INT, "float64": FLOAT,
                                       "bool": BOOL, "timestamp": TIMESTAMP,
                                       "list<float64>": STEP_TIMES}

#: Every column bigtrain writes, in order (bigtrain.results.fields).
KNOWN_COLUMNS: tuple[KnownColumn, ...] = known_columns()
#: Columns whose type is fixed whatever one run holds.
COLUMN_TYPES: dict[str, pa.DataType] = {c.name: ARROW_TYPES[c.kind] for c in KNOWN_COLUMNS}
#: Column-name prefixes whose columns have one type whatever their ending says.
PREFIX_TYPES: dict[str, pa.DataType] = {"hw_reason_": STRING}  # why a hardware metric is blank


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


def _metadata(column: KnownColumn) -> dict[str, str]:
    return {key: value for key, value in (("unit", column.unit),
                                          ("description", column.description)) if value}


def arrow_schema(frame: pd.DataFrame) -> pa.Schema:
    """The explicit schema the frame is written with: every known column (in the field table's
    order, with its unit and description as field metadata), then the frame's other columns."""
    fields = [pa.field(c.name, ARROW_TYPES[c.kind], metadata=_metadata(c) or None)
              for c in KNOWN_COLUMNS]
    known = set(COLUMN_TYPES)
    fields += [pa.field(str(c), column_type(str(c), frame[c])) for c in frame.columns
               if str(c) not in known]
    return pa.schema(fields)


def frame_to_table(frame: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table of `arrow_schema(frame)`, every value cast to its column type;
    a known column the frame lacks is all null."""
    schema = arrow_schema(frame)
    arrays = [_array(frame[field.name], field.type) if field.name in frame
              else pa.nulls(len(frame), field.type) for field in schema]
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
