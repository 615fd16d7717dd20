"""The analysing side's view of results: one tidy pandas DataFrame for one or many runs.

A row per cell and repeat; the axes, the status, the scalar metrics, flattened phase and
telemetry figures, and the run's machine and software as columns. Never imports torch or pynvml.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from bigtrain.results.fields import (
    AXES_AFTER,
    CONVERGE_PROTOCOL,
    FLOAT64,
    INT64,
    frame_fields,
)
from bigtrain.results.schema import AXES, CellRecord
from bigtrain.results.store import LoadedRun, load_run

#: Scalar metrics copied straight from a record: the field table's one-column numeric frame fields
#: that every protocol has (bigtrain.results.fields).
SCALAR_METRICS = tuple(
    f.name for f in frame_fields()
    if f.kind in (INT64, FLOAT64) and f.protocol is None and f.name not in ("repeat",)
)

#: The time-to-target fields of a converge record (`protocol == "converge"`), copied as columns.
#: Step-time records do not get these columns, so their frames stay as they were (Parquet files
#: carry every known column; see bigtrain.results.parquet).
CONVERGE_FIELDS = tuple(f.name for f in frame_fields() if f.protocol == CONVERGE_PROTOCOL)


def machine_label(environment: Mapping[str, Any]) -> str:
    """A short human name for the machine a run was made on: its GPU, else its CPU, and host."""
    gpus = environment.get("gpus") or []
    if gpus:
        names = sorted({g.get("name") or "GPU" for g in gpus})  # NVML may not name a GPU: null
        chip = f"{len(gpus)}x {'/'.join(names)}" if len(gpus) > 1 else names[0]
    else:
        chip = environment.get("cpu_model") or "CPU"
    host = environment.get("host")
    return f"{chip} ({host})" if host else chip


def record_row(record: CellRecord) -> dict[str, Any]:
    """Flatten one record into a row of scalars (raw step times kept as a tuple), one column (or
    group of columns) per frame field of the field table, in record order."""
    row: dict[str, Any] = {}
    for f in frame_fields():
        if f.protocol is not None and record.protocol != f.protocol:
            continue
        value = getattr(record, f.name)
        if f.prefix:  # an open mapping (telemetry, extra, hardware_reasons): its scalar keys
            for key, item in (value or {}).items():
                if _is_scalar(item):
                    row[f"{f.prefix}{key}"] = item
                elif isinstance(item, (list, tuple)) and all(isinstance(v, str) for v in item):
                    row[f"{f.prefix}{key}"] = ", ".join(item)  # e.g. throttle_reasons_seen
        elif f.columns:  # a structured value (step_time_s, phase_time_s): one column per part
            for column in f.columns:
                row[column.name] = getattr(value, column.key) if value is not None else None
        else:
            row[f.name] = value
        if f.name == AXES_AFTER:
            row.update(record.axes())
        if f.name == "node_id":  # a cluster executor's record names the node and host that ran it
            row["node_host"] = record.host if record.node_id else None
    return row


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str, bool))


def run_frame(run: LoadedRun) -> pd.DataFrame:
    """The tidy frame of one loaded run, with its machine and software columns."""
    env = run.manifest.environment
    rows = [record_row(r) for r in run.records]
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["run_id", "cell_id", "repeat", *AXES, "status"])
    frame["run_path"] = str(run.path)
    frame["machine"] = machine_label(env)
    frame["host"] = env.get("host")
    gpu_names = sorted({g.get("name") or "" for g in env.get("gpus") or []})
    frame["gpu_name"] = ", ".join(gpu_names) or None
    frame["driver_version"] = env.get("driver_version")
    frame["torch_version"] = env.get("torch_version")
    frame["cuda_version"] = env.get("cuda_version")
    frame["run_started_at"] = run.manifest.started_at
    frame["run_state"] = run.manifest.state
    frame["run_ended_at"] = run.manifest.ended_at
    frame["cpu_model"] = env.get("cpu_model")
    frame["gpu_count"] = env.get("gpu_count")
    frame["torch_num_threads"] = env.get("torch_num_threads")
    return _per_node_machines(frame)


def _per_node_machines(frame: pd.DataFrame) -> pd.DataFrame:
    """A cluster run's rows name the chip and host that ran each cell, not the driver's machine:
    one run over a mixed fleet is then read per GPU model."""
    if "node_id" not in frame or not frame["node_id"].notna().any():
        return frame
    on_node = frame["node_id"].notna()
    frame.loc[on_node, "host"] = frame.loc[on_node, "node_host"]
    frame.loc[on_node, "machine"] = frame.loc[on_node, "device_name"].fillna("unknown device")
    return frame


def frame_of_runs(runs: Iterable[LoadedRun]) -> pd.DataFrame:
    """One frame for runs already loaded (rows keep their run_id and run_path)."""
    frames = [run_frame(run) for run in runs]
    if not frames:
        raise ValueError("no runs given")
    frames = [f for f in frames if not f.empty] or frames[:1]
    return _numeric_where_possible(pd.concat(frames, ignore_index=True))


def _numeric_where_possible(frame: pd.DataFrame) -> pd.DataFrame:
    """Metric columns that are null in one run (no GPU: no allocated bytes) come out of concat as
    object; make those that hold only numbers and nulls numeric again, so they aggregate."""
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        values = frame[column].dropna()
        if values.empty and column not in SCALAR_METRICS:
            continue
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def load_frame(run_dirs: Iterable[Path | str]) -> pd.DataFrame:
    """Load and validate one or more run folders into one frame (rows keep their run_id)."""
    return frame_of_runs(load_run(Path(d)) for d in run_dirs)
