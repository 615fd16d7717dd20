"""The append-only results store: `results/<run_id>/manifest.json` and `cells.jsonl`.

Only the process that owns a run writes to it. Records are appended one whole line at a time
with a single `write`, then flushed and fsynced, so a kill at any moment leaves at most one
truncated last line, which readers set aside with a warning. The manifest is replaced atomically
(write a temporary file, fsync, rename). A lock file held with `flock` keeps a second sweep out of
the same run folder and names the holder.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import math
import os
import re
import shutil
import socket
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bigtrain.common.errors import BadInput
from bigtrain.results.schema import CellRecord, Manifest, SchemaError

MANIFEST_NAME = "manifest.json"
CELLS_NAME = "cells.jsonl"
LOCK_NAME = ".lock"
#: Refuse to start a run with less free space than this in the output folder.
MIN_FREE_BYTES = 16 * 1024 * 1024


class TruncatedLineWarning(UserWarning):
    """The last line of a results file was cut short (a kill or power cut mid-write)."""


class RunLocked(BadInput):
    """Another live process is writing to this run folder."""


class UnstorableRecord(ValueError):
    """A record holding something JSON cannot carry (the message names the key)."""


def json_problem(value: Any, path: str = "") -> str | None:
    """Where `value` holds something strict JSON cannot carry: the dotted key path and what is
    there (`extra.weights: a set, which JSON cannot hold`), or None when all of it encodes."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                return f"{where}: a key of type {type(key).__name__}"
            found = json_problem(item, where)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = json_problem(item, f"{path}[{index}]")
            if found:
                return found
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path or 'value'}: {value!r}, not a finite number"
    if value is None or isinstance(value, (str, int, float, bool)):
        return None
    return f"{path or 'value'}: a {type(value).__name__}, which JSON cannot hold"


@dataclass(frozen=True)
class LoadedRun:
    """A run read back from disk.

    `records` holds the latest record of each (cell_id, repeat): a cell retried on resume keeps
    its earlier record in the file (append-only) but the retry supersedes it. `history` holds
    every record in file order.
    """

    path: Path
    manifest: Manifest
    records: tuple[CellRecord, ...]
    history: tuple[CellRecord, ...] = ()
    truncated_lines: tuple[int, ...] = ()


def latest_records(history: Iterable[CellRecord]) -> list[CellRecord]:
    """The last record of each (cell_id, repeat), in the order each key first appeared."""
    latest: dict[tuple[str, int], CellRecord] = {}
    for record in history:
        latest[(record.cell_id, record.repeat)] = record
    return list(latest.values())


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON so a reader sees the old file or the new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RunWriter:
    """Owns one run folder while a sweep writes to it. Use as a context manager."""

    def __init__(self, run_dir: Path, *, resume: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.resume = resume
        self._lock_fh: Any = None
        self._cells_fd: int | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> RunWriter:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Create (or, when resuming, reopen) the run folder and take its lock."""
        if self.resume:
            if not (self.run_dir / MANIFEST_NAME).is_file():
                raise BadInput(f"cannot resume: {self.run_dir / MANIFEST_NAME} does not exist")
            self._refuse_links()
            if not os.access(self.run_dir, os.W_OK | os.X_OK):
                raise BadInput(f"cannot resume {self.run_dir}: the run folder is not writable "
                               f"(a read-only filesystem or its permissions); nothing was "
                               f"written")
        else:
            if self.run_dir.exists():
                raise BadInput(
                    f"run folder {self.run_dir} already exists; choose another --run-id, or "
                    f"--resume {self.run_dir.name} to continue it (nothing was overwritten)"
                )
            check_writable(self.run_dir.parent)
            self.run_dir.mkdir(parents=True)
        try:
            self._take_lock()
            # O_NOFOLLOW: records go into this folder's own file, never through a symlink.
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
            self._cells_fd = os.open(self.run_dir / CELLS_NAME, flags, 0o644)
        except OSError as exc:
            self.close()
            raise BadInput(f"cannot write to run folder {self.run_dir}: "
                           f"{exc.strerror or exc} ({exc.filename or self.run_dir}); nothing "
                           f"was written") from None
        if self.resume:
            self._repair_truncated_tail()

    def close(self) -> None:
        """Release the cells file and the lock."""
        if self._cells_fd is not None:
            os.close(self._cells_fd)
            self._cells_fd = None
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def _refuse_links(self) -> None:
        """BadInput when one of the run folder's own files is a symlink: a resume appends to
        cells.jsonl and replaces manifest.json, and must never write outside the folder."""
        for name in (CELLS_NAME, MANIFEST_NAME, LOCK_NAME):
            path = self.run_dir / name
            if path.is_symlink():
                raise BadInput(f"cannot resume {self.run_dir}: {path} is a symlink (to "
                               f"{os.readlink(path)}); a run folder's own files must be plain "
                               f"files inside it; nothing was written")

    def _take_lock(self) -> None:
        lock_path = self.run_dir / LOCK_NAME
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
        fh = open(fd, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown process"
            fh.close()
            raise RunLocked(f"run folder {self.run_dir} is in use by {holder}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        self._lock_fh = fh

    def _repair_truncated_tail(self) -> None:
        """On resume, end a cut-short last line so the next record starts on a line of its own.

        The partial line stays in the file (append-only: nothing recorded is removed). Its number
        goes into the manifest first, so readers skip exactly that line with a warning, even if
        this process is killed right after.
        """
        path = self.run_dir / CELLS_NAME
        data = path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        line = data.count(b"\n") + 1
        manifest = read_manifest(self.run_dir)
        if line not in manifest.repaired_lines:
            self.write_manifest(dataclasses.replace(
                manifest, repaired_lines=(*manifest.repaired_lines, line)))
        self._write_bytes(b"\n")

    # -- writing ---------------------------------------------------------------------------
    def write_manifest(self, manifest: Manifest) -> None:
        """Atomically replace the manifest."""
        write_json_atomic(self.run_dir / MANIFEST_NAME, manifest.to_json())

    def append(self, record: CellRecord) -> None:
        """Append one record as one line, then flush and fsync before returning.

        UnstorableRecord (nothing written) when part of it is not JSON."""
        data = record.to_json()
        try:
            problem = json_problem(data)
        except RecursionError:
            problem = "a value nested too deeply"
        if problem:
            raise UnstorableRecord(problem)
        line = json.dumps(data, allow_nan=False, separators=(",", ":")) + "\n"
        self._write_bytes(line.encode("utf-8"))

    def _write_bytes(self, data: bytes) -> None:
        if self._cells_fd is None:
            raise RuntimeError("RunWriter is not open")
        written = 0
        while written < len(data):
            written += os.write(self._cells_fd, data[written:])
        os.fsync(self._cells_fd)


def check_writable(folder: Path) -> None:
    """Fail before the first cell if `folder` cannot hold a run (unwritable, or disk full)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"output folder {folder} cannot be created: {exc.strerror}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInput(f"output folder {folder} is not writable")
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise BadInput(
            f"output folder {folder} has only {free} bytes free; at least {MIN_FREE_BYTES} needed"
        )


def is_disk_full(exc: BaseException) -> bool:
    """True for the OSErrors that mean the disk (or quota) is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


# -- reading -------------------------------------------------------------------------------
def iter_records(
    path: Path,
    on_truncated: Callable[[int], None] | None = None,
    repaired_lines: Iterable[int] = (),
) -> Iterator[tuple[int, CellRecord]]:
    """Yield (line number, record) from a cells file, validating each line.

    A truncated last line (no newline, not valid JSON), or a cut line that a resume closed
    (`repaired_lines`, from the manifest), is skipped with a TruncatedLineWarning (and reported
    to `on_truncated`); any other bad line raises BadInput naming file and line.
    """
    path = Path(path)
    repaired = set(repaired_lines)
    raw_lines = _read_bytes(path).split(b"\n")
    # split leaves '' after a final newline; any other last element had no newline: maybe cut.
    last_index = len(raw_lines) - 1
    for index, raw in enumerate(raw_lines):
        lineno = index + 1
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except RecursionError:
            raise BadInput(f"{path}:{lineno}: corrupt record: JSON nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, or a 5000-digit number
            if index == last_index or lineno in repaired:
                warnings.warn(
                    f"{path}:{lineno}: truncated record set aside (the writer was stopped "
                    f"mid-line)",
                    TruncatedLineWarning,
                    stacklevel=2,
                )
                if on_truncated is not None:
                    on_truncated(lineno)
                continue
            raise BadInput(f"{path}:{lineno}: corrupt record: {exc}") from None
        try:
            # CellRecord.from_json checks the version and upgrades an older record (migrations.py).
            record = CellRecord.from_json(data)
        except SchemaError as exc:
            raise BadInput(f"{path}:{lineno}: {exc}") from None
        except RecursionError:
            raise BadInput(f"{path}:{lineno}: corrupt record: a value nested too deeply") from None
        yield lineno, record


def _read_bytes(path: Path) -> bytes:
    """A file's bytes; an unreadable path is BadInput naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_manifest(run_dir: Path) -> Manifest:
    """Read and validate `manifest.json`; BadInput names the file on any problem."""
    path = Path(run_dir) / MANIFEST_NAME
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        data = json.loads(text)
    except (FileNotFoundError, NotADirectoryError):
        raise BadInput(f"{path}: no such file; is {run_dir} a bigbench run folder?") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a text file") from None
    except RecursionError:
        raise BadInput(f"{path}: unreadable JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
    except ValueError as exc:  # valid JSON Python will not read, e.g. a 5000-digit number
        raise BadInput(f"{path}: unreadable JSON: {exc}") from None
    try:
        # Manifest.from_json checks the version and upgrades an older manifest (migrations.py).
        return Manifest.from_json(data)
    except RecursionError:
        raise BadInput(f"{path}: unreadable manifest: a value nested too deeply") from None
    except SchemaError as exc:
        # A value breaking its rule names its field; point at the line of that field's key.
        line = _line_of_field(text, exc.field or exc.key) if (exc.field or exc.key) else None
        raise BadInput(f"{path}:{line}: {exc}" if line else f"{path}: {exc}") from None


def _line_of_field(text: str, field: str) -> int | None:
    """The 1-based line where a JSON document names `field` (dotted: `environment.gpus`), found
    key by key, each after the line of the one before; for error messages."""
    keys = [part for part in re.split(r"\.|\[\d+\]", field) if part]
    lines = text.splitlines()
    found: int | None = None
    start = 0
    for key in keys:
        needle = json.dumps(key) + ":"
        for number in range(start, len(lines)):
            if needle in lines[number].replace('" :', '":'):
                found, start = number + 1, number + 1
                break
        else:
            return found  # the deepest key that was found (or None)
    return found


def load_run(run_dir: Path) -> LoadedRun:
    """Read a whole run folder, validating every record."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    cells = run_dir / CELLS_NAME
    records: list[CellRecord] = []
    truncated: list[int] = []
    if cells.exists():
        records = [record for _, record in iter_records(
            cells, on_truncated=truncated.append, repaired_lines=manifest.repaired_lines)]
    return LoadedRun(
        path=run_dir,
        manifest=manifest,
        records=tuple(latest_records(records)),
        history=tuple(records),
        truncated_lines=tuple(truncated),
    )
