"""Find and read the run folders of a history; a corrupt run is named and left out.

A history is read from any number of paths, each a run folder (it holds `manifest.json`) or a
store (a folder of run folders, one level down). A run that cannot be read is set aside with the
message naming its file and line; the others go on. Every run is placed on the time axis by its
commit's time where the manifest has one, else by when it started (flagged `placed_by_time`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bigtrain.common.errors import BadInput
from bigtrain.results.store import MANIFEST_NAME, LoadedRun, load_run

#: Environment keys whose change is marked on a series (the machine stays the same one).
SOFTWARE_KEYS = ("bigtrain_version", "torch_version", "driver_version", "cuda_version")
#: Environment keys that name the machine: a series never mixes two values of these.
MACHINE_KEYS = ("gpus", "cpu_model", "cpu_cores_logical", "torch_num_threads")


@dataclass(frozen=True, kw_only=True)
class HistoryRun:
    """One run folder placed in a history: which commit, which machine, when."""

    run: LoadedRun
    commit: str | None
    dirty: bool
    when: datetime
    #: True when the run has no commit time (no git at record time, or an older manifest):
    #: it is placed by its start time.
    placed_by_time: bool
    machine: str
    software: Mapping[str, str | None]

    @property
    def run_id(self) -> str:
        """The run's id, as its manifest says."""
        return self.run.manifest.run_id

    @property
    def commit_short(self) -> str:
        """The commit's first 10 hex digits, `no-commit` without one, `+dirty` when dirty."""
        text = self.commit[:10] if self.commit else "no-commit"
        return f"{text}+dirty" if self.dirty else text


@dataclass(frozen=True)
class SkippedRun:
    """A run folder left out of the history, and why (file:line where the store said)."""

    path: Path
    message: str


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def machine_key(environment: Mapping[str, Any]) -> str:
    """A stable text naming the machine a run ran on: GPU names with their count, CPU model and
    logical cores, torch's CPU threads. Software versions are not part of it (they are marked)."""
    gpus = sorted(str(g.get("name", "?")) for g in environment.get("gpus") or []
                  if isinstance(g, Mapping))
    gpu_text = f"{len(gpus)}x {gpus[0]}" if gpus and len(set(gpus)) == 1 else " + ".join(gpus)
    parts = [gpu_text or "no GPU", str(environment.get("cpu_model") or "unknown CPU"),
             f"{environment.get('cpu_cores_logical') or '?'} cores",
             f"{environment.get('torch_num_threads') or '?'} threads"]
    return " | ".join(parts)


def place_run(run: LoadedRun) -> HistoryRun:
    """A loaded run with its commit, machine and place in time."""
    env = run.manifest.environment or {}
    commit = env.get("git_commit") or None
    commit_time = _parse_time(env.get("git_commit_time")) if commit else None
    started = _parse_time(run.manifest.started_at) or datetime.fromtimestamp(0, timezone.utc)
    return HistoryRun(run=run, commit=commit, dirty=bool(env.get("git_dirty")),
                      when=commit_time or started, placed_by_time=commit_time is None,
                      machine=machine_key(env),
                      software={key: (None if env.get(key) is None else str(env.get(key)))
                                for key in SOFTWARE_KEYS})


def run_folders(paths: Iterable[Path]) -> list[Path]:
    """Each path itself when it is a run folder, else its run folders one level down (sorted);
    a path that is neither is BadInput."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if (path / MANIFEST_NAME).is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise BadInput(f"{path}: no such folder; give run folders or a folder of them")
        children = sorted(child for child in path.iterdir()
                          if child.is_dir() and not child.is_symlink()
                          and (child / MANIFEST_NAME).is_file())
        if not children:
            raise BadInput(f"{path}: neither a run folder (no {MANIFEST_NAME}) nor a folder of "
                           f"run folders")
        found.extend(children)
    return list(dict.fromkeys(found))


def load_history(paths: Sequence[Path]) -> tuple[list[HistoryRun], list[SkippedRun]]:
    """Read every run folder under `paths`: (the placed runs in time order, the runs left out)."""
    runs: list[HistoryRun] = []
    skipped: list[SkippedRun] = []
    for folder in run_folders(paths):
        try:
            runs.append(place_run(load_run(folder)))
        except BadInput as exc:
            skipped.append(SkippedRun(path=folder, message=str(exc)))
    runs.sort(key=lambda run: (run.when, run.run_id))
    return runs, skipped
