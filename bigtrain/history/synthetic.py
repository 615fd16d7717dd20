"""Synthetic histories made from real recorded cells, for the power bench, the docs' example
dashboard and the tests — never presented as measured runs.

Each synthetic run is one "commit": every cell's recorded step times are resampled (bootstrap,
seeded), multiplied by a run-level factor drawn from a log-normal of `run_noise_pct` (the
run-to-run wander a real machine adds on top of the step-to-step spread), and by the planted
shift from commit `shift_at` on. The summaries (step_time_s, items_per_s, phase times) are
recomputed from the new steps. Manifests say `synthetic` in the run id and the spec.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bigtrain.results.schema import StepTimeStats
from bigtrain.results.store import CELLS_NAME, MANIFEST_NAME


def fake_commit(index: int, seed: int) -> str:
    """A 40-hex-digit stand-in commit for synthetic commit `index`."""
    return hashlib.sha1(f"synthetic-{seed}-{index}".encode()).hexdigest()


def read_source(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest and the ok records with step times of a real run folder."""
    manifest = json.loads((Path(run_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))
    records = [json.loads(line) for line in
               (Path(run_dir) / CELLS_NAME).read_text(encoding="utf-8").splitlines() if line.strip()]
    return manifest, [r for r in records if r.get("status") == "ok" and r.get("step_times_s")]


def resampled_record(record: dict[str, Any], rng: np.random.Generator, factor: float,
                     run_id: str) -> dict[str, Any]:
    """`record` with its steps resampled and scaled by `factor`, summaries recomputed."""
    steps = np.asarray(record["step_times_s"], dtype=float)
    new = rng.choice(steps, size=steps.size, replace=True) * factor
    out = dict(record, run_id=run_id, step_times_s=[float(s) for s in new])
    out["step_time_s"] = dict(vars(StepTimeStats.from_samples(out["step_times_s"])))
    old_median = float(np.median(steps))
    ratio = out["step_time_s"]["median"] / old_median
    if record.get("items_per_s"):
        out["items_per_s"] = record["items_per_s"] / ratio
    if isinstance(record.get("phase_time_s"), dict):
        out["phase_time_s"] = {k: (v * ratio if isinstance(v, (int, float)) else v)
                               for k, v in record["phase_time_s"].items()}
    return out


def write_history(source: Path, out: Path, *, commits: int, shift_at: int | None = None,
                  shift_pct: float = 0.0, shifted_cells: Sequence[str] | None = None,
                  run_noise_pct: float = 0.0, seed: int = 0,
                  dirty_at: Sequence[int] = (), no_commit_at: Sequence[int] = (),
                  only_cells: Sequence[str] | None = None) -> list[Path]:
    """Write `commits` synthetic run folders under `out` from the real run `source`; from
    commit `shift_at` on, the step times of `shifted_cells` (default: all) are `shift_pct`
    percent longer; `only_cells` keeps just those cells. Returns the folders, oldest first."""
    manifest, records = read_source(source)
    if only_cells is not None:
        records = [r for r in records if r["cell_id"] in only_cells]
    rng = np.random.default_rng(seed)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    sigma = math.log1p(run_noise_pct / 100.0)
    folders = []
    for index in range(commits):
        run_id = f"synthetic-{seed}-{index:03d}"
        when = start + timedelta(hours=index)
        env = dict(manifest["environment"])
        if index in no_commit_at:
            env.update(git_commit=None, git_dirty=None)
            env.pop("git_commit_time", None)
        else:
            env.update(git_commit=fake_commit(index, seed), git_dirty=index in dirty_at,
                       git_commit_time=when.isoformat())
        spec = dict(manifest["spec"], description=f"synthetic history from {manifest['run_id']}")
        folder = Path(out) / run_id
        folder.mkdir(parents=True, exist_ok=False)
        run_manifest = dict(manifest, run_id=run_id, environment=env, spec=spec,
                            started_at=(when + timedelta(minutes=5)).isoformat(),
                            ended_at=(when + timedelta(minutes=6)).isoformat(),
                            repaired_lines=[])
        (folder / MANIFEST_NAME).write_text(json.dumps(run_manifest, indent=2), encoding="utf-8")
        lines = []
        for record in records:
            factor = math.exp(rng.normal(0.0, sigma)) if sigma else 1.0
            shifted = shifted_cells is None or record["cell_id"] in shifted_cells
            if shift_at is not None and index >= shift_at and shifted:
                factor *= 1 + shift_pct / 100.0
            lines.append(json.dumps(resampled_record(record, rng, factor, run_id)))
        (folder / CELLS_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
        folders.append(folder)
    return folders
