"""The one reader of the profile artifact contract; everything else in `bigtrain.profiles` reads
what this module returns, so a change of the capture side is adapted here alone.

The contract (written by `bigbench profile` / `sweep --profile`):

- per profiled cell a folder `results/<run>/profiles/<cell_dir>/` holding `trace.json.gz`,
  `ops.csv` (and `ops.parquet`, the same table) with the columns of `OP_COLUMNS`, and
  `summary.json` (`schema` 1, `cell_id`, `steps_profiled`, `step_time_s_profiled`,
  `launches_per_step_by_phase`, `device_kernels_per_step`, `top_ops`, `share_by_category`,
  `share_by_phase`, `memory_snapshot`, `trace`);
- the cell's record carries `profile_status` (none|ok|failed|unsupported), `profile_reason`,
  `profile_path` (relative to the run folder) and `profile_summary`. Until the record fields
  exist, they are read from the record's `extra`; a run whose records name no profile is still
  searched for `profiles/*/summary.json`.

Every value read here is data: a path from a file is followed only when it resolves inside its
folder, a bad file marks its cell invalid with the reason (the other cells still load).
Reads ops.csv with the csv module (no pandas: `compare` stays light); ops.parquet only where the
CSV is missing.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigtrain.common.errors import BadInput
from bigtrain.common.op_categories import CATEGORIES
from bigtrain.common.profile_format import (  # noqa: F401 - the contract, re-exported here
    OP_COLUMNS,
    OPS_CSV_NAME,
    OPS_PARQUET_NAME,
    PHASES,
    PROFILES_DIR,
    SUMMARY_NAME,
    SUMMARY_SCHEMA,
)

#: CATEGORIES (imported above) come from the one rule table, bigtrain.common.op_categories.
#: PROFILE_STATUSES (imported above) are declared with the record fields.
#: The record keys of the contract (read from the record, else from its `extra`).
PROFILE_RECORD_KEYS = ("profile_status", "profile_reason", "profile_path", "profile_summary")
#: A bigger summary.json or ops table is no profile we wrote (a few MB per cell at most).
MAX_SUMMARY_BYTES = 4 << 20
MAX_OPS_BYTES = 64 << 20


class InvalidProfile(ValueError):
    """A profile folder that does not hold what the contract says; the message says what."""


@dataclass(frozen=True)
class OpRow:
    """One row of a cell's ops table: an op (in one phase, with one input-shape signature)."""

    op: str
    phase: str
    category: str
    calls_per_step: float
    self_host_us_per_step: float
    self_device_us_per_step: float | None
    flops_per_step: float | None
    input_shapes: str
    share_of_step: float | None


@dataclass(frozen=True)
class CellProfile:
    """One profiled cell: its folder, summary and ops, and what its record says about it."""

    cell_id: str
    folder: Path
    summary: Mapping[str, Any]
    ops: tuple[OpRow, ...]
    #: the cell's axes from its record (empty when read from a bare profile folder)
    axes: Mapping[str, Any] = field(default_factory=dict)
    #: the median step time of the cell's timed (unprofiled) window(s), from its records
    step_time_s: float | None = None
    #: the record's calibration figures (`measured_peak_tflops`, `calibration_id`, ...)
    record_figures: Mapping[str, Any] = field(default_factory=dict)

    @property
    def time_basis(self) -> str:
        """`device` when the ops table holds device time (a CUDA trace), else `host`."""
        if any(r.self_device_us_per_step for r in self.ops):
            return "device"
        return "host"

    def op_time_us(self, row: OpRow) -> float:
        """The self time per step of `row` on this profile's time basis, in µs."""
        if self.time_basis == "device":
            return row.self_device_us_per_step or 0.0
        return row.self_host_us_per_step

    @property
    def step_time_s_profiled(self) -> float | None:
        """The median step time inside the profiled window (slower than the timed one)."""
        return _positive(self.summary.get("step_time_s_profiled"))

    def relative_file(self, key: str) -> Path | None:
        """The file the summary names under `key` (`trace`, `memory_snapshot`), when it resolves
        inside the cell's folder and exists; None otherwise (never a path outside)."""
        name = self.summary.get(key)
        if not isinstance(name, str) or not name:
            return None
        return inside(self.folder, name)


@dataclass(frozen=True)
class RunProfiles:
    """The profiles of one run folder (or one profiles folder): valid cells, invalid ones with
    the reason, and cells whose record says they were not profiled (status and reason)."""

    path: Path
    profiles: Mapping[str, CellProfile]
    invalid: Mapping[str, str] = field(default_factory=dict)
    not_profiled: Mapping[str, str] = field(default_factory=dict)
    run_id: str | None = None

    @property
    def any(self) -> bool:
        """True when at least one cell has a valid profile."""
        return bool(self.profiles)


def inside(folder: Path, relative: str) -> Path | None:
    """`folder / relative` resolved, when it stays inside `folder` and exists; else None."""
    base = Path(os.path.realpath(folder))
    if os.path.isabs(relative):
        return None
    target = Path(os.path.realpath(base / relative))
    if target == base or base not in target.parents or not target.exists():
        return None
    return target


# -- one cell folder --------------------------------------------------------------------------
def load_cell_profile(folder: Path, *, axes: Mapping[str, Any] | None = None,
                      step_time_s: float | None = None,
                      record_figures: Mapping[str, Any] | None = None,
                      expected_cell_id: str | None = None) -> CellProfile:
    """Read one profile folder; InvalidProfile naming the file, line and field when it does not
    hold what the contract says."""
    folder = Path(folder)
    summary = _read_summary(folder)
    cell_id = summary.get("cell_id")
    if not isinstance(cell_id, str) or not cell_id:
        raise InvalidProfile(f"{folder / SUMMARY_NAME}: field cell_id {cell_id!r} is not a cell id")
    if expected_cell_id is not None and cell_id != expected_cell_id:
        raise InvalidProfile(f"{folder / SUMMARY_NAME}: cell_id {cell_id!r}, but the record "
                             f"pointing here is cell {expected_cell_id!r}")
    ops = _read_ops(folder)
    return CellProfile(cell_id=cell_id, folder=folder, summary=summary, ops=ops,
                       axes=dict(axes or {}), step_time_s=step_time_s,
                       record_figures=dict(record_figures or {}))


def _read_summary(folder: Path) -> dict[str, Any]:
    path = folder / SUMMARY_NAME
    if inside(folder, SUMMARY_NAME) is None:
        raise InvalidProfile(f"{path}: missing (or a link out of the profile folder)")
    try:
        if path.stat().st_size > MAX_SUMMARY_BYTES:
            raise InvalidProfile(f"{path}: {path.stat().st_size} bytes, more than a summary holds")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidProfile(f"{path}: unreadable: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidProfile(f"{path}: line {exc.lineno}: not JSON (truncated?): {exc.msg}") from None
    if not isinstance(data, dict):
        raise InvalidProfile(f"{path}: a summary must be a JSON object, not {type(data).__name__}")
    if data.get("schema") != SUMMARY_SCHEMA:
        raise InvalidProfile(f"{path}: field schema {data.get('schema')!r}; this bigtrain reads "
                             f"schema {SUMMARY_SCHEMA}")
    return data


def _read_ops(folder: Path) -> tuple[OpRow, ...]:
    if inside(folder, OPS_CSV_NAME) is not None:
        return _ops_from_csv(folder / OPS_CSV_NAME)
    if inside(folder, OPS_PARQUET_NAME) is not None:
        return _ops_from_parquet(folder / OPS_PARQUET_NAME)
    raise InvalidProfile(f"{folder}: neither {OPS_CSV_NAME} nor {OPS_PARQUET_NAME} is there")


def _ops_from_csv(path: Path) -> tuple[OpRow, ...]:
    try:
        if path.stat().st_size > MAX_OPS_BYTES:
            raise InvalidProfile(f"{path}: {path.stat().st_size} bytes, more than an ops table holds")
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in OP_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise InvalidProfile(f"{path}: line 1: missing column(s) {', '.join(missing)}; "
                                     f"the ops table has {', '.join(OP_COLUMNS)}")
            return tuple(_op_row(row, path, line) for line, row in enumerate(reader, start=2))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidProfile(f"{path}: unreadable: {exc}") from None


def _ops_from_parquet(path: Path) -> tuple[OpRow, ...]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - a corrupt file raises pyarrow's own types
        raise InvalidProfile(f"{path}: unreadable Parquet: {exc}") from None
    missing = [c for c in OP_COLUMNS if c not in table.column_names]
    if missing:
        raise InvalidProfile(f"{path}: missing column(s) {', '.join(missing)}")
    rows = table.select(list(OP_COLUMNS)).to_pylist()
    return tuple(_op_row(row, path, i) for i, row in enumerate(rows, start=1))


def _op_row(row: Mapping[str, Any], path: Path, line: int) -> OpRow:
    where = f"{path}: line {line}"
    op = row.get("op")
    if not isinstance(op, str) or not op:
        raise InvalidProfile(f"{where}: field op {op!r} is empty")
    phase, category = row.get("phase"), row.get("category")
    if phase not in PHASES:
        raise InvalidProfile(f"{where}: field phase {phase!r}; valid: {', '.join(PHASES)}")
    if category not in CATEGORIES:
        raise InvalidProfile(f"{where}: field category {category!r}; valid: "
                             f"{', '.join(CATEGORIES)}")
    return OpRow(
        op=op, phase=phase, category=category,
        calls_per_step=_number(row, "calls_per_step", where, required=True),
        self_host_us_per_step=_number(row, "self_host_us_per_step", where, required=True),
        self_device_us_per_step=_number(row, "self_device_us_per_step", where),
        flops_per_step=_number(row, "flops_per_step", where),
        input_shapes=str(row.get("input_shapes") or ""),
        share_of_step=_number(row, "share_of_step", where),
    )


def _number(row: Mapping[str, Any], name: str, where: str, *, required: bool = False) -> Any:
    value = row.get(name)
    if value is None or value == "":
        if required:
            raise InvalidProfile(f"{where}: field {name} is empty; it must be a number >= 0")
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidProfile(f"{where}: field {name} {value!r} is not a number") from None
    if math.isnan(number) and not required:
        return None
    if not math.isfinite(number) or number < 0:
        raise InvalidProfile(f"{where}: field {name} {value!r}: must be a finite number >= 0")
    return number


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def trace_problem(profile: CellProfile) -> str | None:
    """Why the cell's trace is unusable (missing, not gzip, truncated, not a JSON object), or
    None when it reads to its end. Streams the gzip (no JSON parse): a few MB, tens of ms."""
    import gzip
    import zlib

    named = profile.summary.get("trace")
    path = profile.relative_file("trace")
    if path is None:
        return f"{profile.folder}: the trace {named!r} the summary names is not in the folder"
    try:
        with gzip.open(path, "rb") as handle:
            first = handle.read(1 << 16)
            while handle.read(1 << 20):
                pass
    except EOFError:
        return f"{path}: truncated (the gzip stream ends early)"
    except (OSError, zlib.error) as exc:
        return f"{path}: not a readable gzip file: {exc}"
    if not first.lstrip().startswith(b"{"):
        return f"{path}: not a Chrome trace (a JSON object was expected)"
    return None


def with_valid_traces(found: RunProfiles) -> RunProfiles:
    """`found` with each cell whose trace is unusable moved to `invalid`, with the reason."""
    profiles, invalid = {}, dict(found.invalid)
    for cell_id, profile in found.profiles.items():
        problem = trace_problem(profile)
        if problem is None:
            profiles[cell_id] = profile
        else:
            invalid[cell_id] = problem
    return RunProfiles(path=found.path, profiles=profiles, invalid=invalid,
                       not_profiled=found.not_profiled, run_id=found.run_id)


# -- a run folder, a profiles folder, or one cell folder ---------------------------------------
def record_profile_fields(record: Any) -> dict[str, Any]:
    """The contract's profile keys of one record: its own attributes where the field table has
    them, else its `extra` (records written before the fields were declared)."""
    extra = getattr(record, "extra", None) or {}
    out = {}
    for key in PROFILE_RECORD_KEYS:
        value = getattr(record, key, None)
        out[key] = value if value is not None else extra.get(key)
    return out


_FIGURES = ("measured_peak_tflops", "calibration_id", "optimizer_bytes_per_step",
            "optimizer_floor_s", "flops_per_step")


def load_profiles(path: Path) -> RunProfiles:
    """The profiles under `path`: a run folder (through its records' profile fields, else its
    `profiles/` folder), a `profiles/` folder, or one cell's profile folder. BadInput when `path`
    is none of these or does not exist."""
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"{path}: no such folder; give a run folder (results/<run_id>) or a "
                       f"profile folder (results/<run_id>/profiles[/<cell>])")
    from bigtrain.results.output_paths import is_run_folder

    if is_run_folder(path):
        return _load_run_folder(path)
    if (path / SUMMARY_NAME).exists():
        return _from_folders(path, [path])
    folders = sorted(p for p in path.iterdir() if p.is_dir() and (p / SUMMARY_NAME).exists())
    if folders:
        return _from_folders(path, folders)
    raise BadInput(f"{path}: neither a run folder (no manifest.json or cells.jsonl) nor a profile "
                   f"folder (no {SUMMARY_NAME} in it or its subfolders)")


def _from_folders(root: Path, folders: Sequence[Path]) -> RunProfiles:
    profiles: dict[str, CellProfile] = {}
    invalid: dict[str, str] = {}
    for folder in folders:
        try:
            profile = load_cell_profile(folder)
        except InvalidProfile as exc:
            invalid[folder.name] = str(exc)
            continue
        profiles[profile.cell_id] = profile
    return RunProfiles(path=root, profiles=profiles, invalid=invalid)


def _load_run_folder(run_dir: Path) -> RunProfiles:
    from bigtrain.results.store import load_run

    return profiles_of_run(load_run(run_dir))


def profiles_of_run(run: Any) -> RunProfiles:
    """The profiles of a run already loaded (`bigtrain.results.store.LoadedRun`)."""
    run_dir = Path(run.path)
    by_cell: dict[str, list[Any]] = {}
    for record in run.records:
        by_cell.setdefault(record.cell_id, []).append(record)
    profiles: dict[str, CellProfile] = {}
    invalid: dict[str, str] = {}
    not_profiled: dict[str, str] = {}
    named_any = False  # a record names a profile state: the records, not the folder, decide
    for cell_id, records in by_cell.items():
        fields = [record_profile_fields(r) for r in records]
        named_any = named_any or any(f["profile_status"] is not None for f in fields)
        chosen = next((f for f in reversed(fields) if f["profile_status"] == "ok"), None)
        if chosen is None:
            named = [f for f in fields if f["profile_status"] not in (None, "none")]
            if named:
                last = named[-1]
                not_profiled[cell_id] = (f"profile {last['profile_status']}: "
                                         f"{last['profile_reason'] or 'no reason recorded'}")
            continue
        relative = chosen["profile_path"]
        folder = inside(run_dir, relative) if isinstance(relative, str) and relative else None
        if folder is None or not folder.is_dir():
            invalid[cell_id] = (f"record of cell {cell_id}: profile_path {relative!r} is not a "
                                f"folder inside the run folder {run_dir}")
            continue
        try:
            profiles[cell_id] = load_cell_profile(
                folder, axes=_axes(records[-1]), step_time_s=_median_step_s(records),
                record_figures=_figures(records[-1]), expected_cell_id=cell_id)
        except InvalidProfile as exc:
            invalid[cell_id] = str(exc)
    if not named_any and (run_dir / PROFILES_DIR).is_dir():
        # Records from before the profile fields: the folders alone, matched by cell id.
        found = _from_folders(run_dir / PROFILES_DIR, sorted(
            p for p in (run_dir / PROFILES_DIR).iterdir()
            if p.is_dir() and not p.is_symlink() and (p / SUMMARY_NAME).exists()))
        for cell_id, profile in found.profiles.items():
            records = by_cell.get(cell_id, [])
            profiles[cell_id] = CellProfile(
                cell_id=cell_id, folder=profile.folder, summary=profile.summary, ops=profile.ops,
                axes=_axes(records[-1]) if records else {},
                step_time_s=_median_step_s(records) if records else None,
                record_figures=_figures(records[-1]) if records else {})
        invalid.update(found.invalid)
    return RunProfiles(path=run_dir, profiles=profiles, invalid=invalid,
                       not_profiled=not_profiled, run_id=run.manifest.run_id)


def may_have_profiles(run: Any) -> bool:
    """Cheap: the loaded run has a `profiles/` folder or a record naming a profile state other
    than none (so a run without profiles costs `compare` and `report` nothing more)."""
    if (Path(run.path) / PROFILES_DIR).is_dir():
        return True
    return any(record_profile_fields(r)["profile_status"] not in (None, "none")
               for r in run.records)


def _axes(record: Any) -> dict[str, Any]:
    from bigtrain.results.schema import AXES

    return {axis: getattr(record, axis, None) for axis in AXES}


def _figures(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name, None) for name in _FIGURES}


def _median_step_s(records: Sequence[Any]) -> float | None:
    medians = sorted(r.step_time_s.median for r in records
                     if getattr(r, "status", None) == "ok" and r.step_time_s is not None)
    if not medians:
        return None
    middle = len(medians) // 2
    return medians[middle] if len(medians) % 2 else (medians[middle - 1] + medians[middle]) / 2
