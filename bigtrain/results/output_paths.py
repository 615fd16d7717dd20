"""Where a command may write: never onto a run folder's own files, never out of its folder.

Every file a command writes as output (`export -o`, `compare`/`ab --json`/`--markdown`, `report
-o` and the report a sweep or `converge` writes) goes through this module. A path is resolved
first (symlinks followed, `..` and relative spellings made absolute), and then refused with
BadInput, before anything is opened, when it lands on a run folder's own files: its
`cells.jsonl`, `manifest.json` (and the manifest's temporary twin), `.lock`, or anything under
its `profiles/`. A run folder is a folder holding a `manifest.json` or a `cells.jsonl`. Only the
sweep driver's `RunWriter` writes those, so nothing recorded is replaced or appended to by an
output, whatever path spelling or symlink leads there.

An existing output file with other names (hard links, which no path check can follow) is
written as a new file renamed into place, so its other names, a run's cells file among them, keep
their content.

A report is a folder of files: each of them must also resolve inside that folder, so a symlink
planted at `D/index.html` or `D/figures` cannot carry the report somewhere else.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from bigtrain.common.errors import BadInput
from bigtrain.common.profile_format import PROFILES_DIR
from bigtrain.results.store import CELLS_NAME, LOCK_NAME, MANIFEST_NAME

#: The files of a run folder that only its sweep writes.
RUN_OWN_FILES = (CELLS_NAME, MANIFEST_NAME, LOCK_NAME, f".{MANIFEST_NAME}.tmp")


def is_run_folder(folder: Path) -> bool:
    """True for a folder holding a run's manifest or cells file."""
    return (folder / MANIFEST_NAME).exists() or (folder / CELLS_NAME).exists()


def run_file_hit(resolved: Path) -> str | None:
    """What of a run folder the resolved path `resolved` is (`cells.jsonl of run folder X`), or
    None when it is none of a run's own files."""
    if resolved.name in RUN_OWN_FILES and is_run_folder(resolved.parent):
        return f"the {resolved.name} of run folder {resolved.parent}"
    for folder in (resolved, *resolved.parents):
        if folder.name == PROFILES_DIR and is_run_folder(folder.parent):
            return f"the profiles of run folder {folder.parent}"
    return None


def checked_output(path: Path | str, *, what: str) -> Path:
    """The resolved path of an output file or folder named on the command line; BadInput when
    it resolves onto a run folder's own files. `what` names the flag (`--json`, `-o`)."""
    given = Path(path)
    resolved = Path(os.path.realpath(given))
    hit = run_file_hit(resolved)
    if hit is not None:
        via = "" if str(resolved) == str(given.absolute()) else f" (it resolves to {resolved})"
        raise BadInput(f"{what} {given}: refusing to write onto {hit}{via}; a run folder's "
                       f"cells, manifest, lock and profiles are written only by its sweep; "
                       f"write the output elsewhere")
    return resolved


def checked_inside(folder: Path, relative: str, *, what: str) -> Path:
    """The resolved path of `relative` in the output folder `folder` (itself resolved): BadInput
    when a symlink on the way takes it out of the folder, or onto a run folder's own files."""
    base = Path(os.path.realpath(folder))
    target = Path(os.path.realpath(base / relative))
    if target != base and base not in target.parents:
        raise BadInput(f"{what} {folder}: {Path(folder) / relative} resolves to {target}, "
                       f"outside the folder (a symlink); refusing to write there; remove the "
                       f"link or choose another folder")
    return checked_output(target, what=what)


def write_output(path: Path | str, content: str | bytes, *, what: str,
                 append: bool = False, make_parents: bool = False) -> Path:
    """Write (or append) `content` to the output file `path` after `checked_output`; an
    unwritable path is BadInput naming it. Returns the resolved path written."""
    resolved = checked_output(path, what=what)
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        if make_parents:
            resolved.parent.mkdir(parents=True, exist_ok=True)
        if _is_hard_linked(resolved):
            _replace_name_only(resolved, data, append=append)
            return resolved
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        # O_NOFOLLOW: a symlink swapped in after the check is refused, not followed.
        fd = os.open(resolved, flags | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise BadInput(f"{what} {path}: cannot write {exc.filename or resolved}: "
                       f"{exc.strerror or exc}") from None
    return resolved


def _is_hard_linked(resolved: Path) -> bool:
    """True when `resolved` is an existing regular file with other names (hard links)."""
    try:
        st = os.lstat(resolved)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_nlink > 1


def _replace_name_only(resolved: Path, data: bytes, *, append: bool) -> None:
    """Write `resolved` as a new file put in place by rename, so a hard link elsewhere (say, a
    run's `cells.jsonl` linked under an innocent name) keeps its content: writing in place would
    change every name of the file, and the realpath check cannot see hard links."""
    old = resolved.read_bytes() if append else b""
    tmp = resolved.with_name(f".{resolved.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(old + data)
        os.replace(tmp, resolved)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
