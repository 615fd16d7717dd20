"""Helpers for the compare and export tests: write small run folders with the real RunWriter.

No tests here; the module is named test_* so it sits among the files it serves.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bigtrain.results.schema import CellRecord, Manifest, PhaseTimes, StepTimeStats
from bigtrain.results.store import RunWriter

ENVIRONMENT: dict[str, Any] = {
    "bigtrain_version": "0.1.0",
    "host": "box",
    "os": "Linux",
    "python_version": "3.12.0",
    "torch_version": "2.13.0",
    "cuda_version": None,
    "cudnn_version": None,
    "driver_version": None,
    "gpus": [],
    "gpu_count": 0,
    "cpu_model": "Test CPU 9000",
    "cpu_cores_logical": 2,
    "cpu_cores_physical": 2,
    "ram_bytes": 8 * 2**30,
    "git_commit": "abc",
    "git_dirty": False,
    "torch_num_threads": 2,
}

ITEMS_PER_STEP = 64


def axes_for(cell_id: str) -> dict[str, Any]:
    """Distinct, plausible axes for a cell id (the id's hash picks the optimizer)."""
    optimizers = ("adam", "sgd", "rmsprop")
    return {
        "model": "mlp:small",
        "optimizer": optimizers[sum(map(ord, cell_id)) % 3],
        "impl": "foreach",
        "batch_norm": "off",
        "precision": "fp32",
        "device": "cpu",
        "batch_size": ITEMS_PER_STEP,
        "compile": "off",
    }


def ok_record(
    run_id: str,
    cell_id: str,
    repeat: int,
    step_times_s: Sequence[float],
    *,
    peak_rss_bytes: int = 500 * 2**20,
    optimizer_s: float | None = None,
    telemetry: Mapping[str, Any] | None = None,
) -> CellRecord:
    """An ok record whose summary figures are derived from its step times."""
    stats = StepTimeStats.from_samples(step_times_s)
    return CellRecord(
        run_id=run_id,
        cell_id=cell_id,
        repeat=repeat,
        **axes_for(cell_id),
        status="ok",
        step_time_s=stats,
        step_times_s=tuple(step_times_s),
        phase_time_s=PhaseTimes(
            forward=stats.median * 0.4,
            backward=stats.median * 0.4,
            optimizer=optimizer_s if optimizer_s is not None else stats.median * 0.2,
        ),
        items_per_s=ITEMS_PER_STEP / stats.median,
        item_unit="samples",
        items_per_step=ITEMS_PER_STEP,
        peak_rss_bytes=peak_rss_bytes,
        loss_first=1.0,
        loss_last=0.5,
        telemetry=telemetry,
        telemetry_reason=None if telemetry else "no GPU",
    )


def failed_record(run_id: str, cell_id: str, repeat: int = 0, status: str = "oom") -> CellRecord:
    return CellRecord(
        run_id=run_id, cell_id=cell_id, repeat=repeat, **axes_for(cell_id), status=status,
        reason=f"{status} during the measured window",
    )


def steps(median_s: float, *, n: int = 30, spread: float = 0.01, seed: int = 0) -> list[float]:
    """n step times scattered by +-spread (relative) around median_s, reproducibly."""
    rng = random.Random(seed)
    return [median_s * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def write_run(
    root: Path,
    run_id: str,
    records: Sequence[CellRecord],
    *,
    environment: Mapping[str, Any] | None = None,
    state: str = "complete",
) -> Path:
    """Write a run folder with the real RunWriter; returns its path."""
    run_dir = Path(root) / run_id
    with RunWriter(run_dir) as writer:
        writer.write_manifest(Manifest(
            run_id=run_id, bigtrain_version="0.1.0", spec={"preset": "test"},
            environment=dict(environment or ENVIRONMENT), started_at="2025-01-01T00:00:00+00:00",
            ended_at="2025-01-01T00:10:00+00:00", state=state, cells_total=len(records),
        ))
        for record in records:
            writer.append(record)
    return run_dir


def repeated_cell(
    run_id: str, cell_id: str, median_s: float, *, repeats: int = 5, seed: int = 0,
    repeat_spread: float = 0.01, **record_options: Any,
) -> list[CellRecord]:
    """`repeats` ok records of one cell, each repeat's median jittered by +-repeat_spread."""
    rng = random.Random(f"{cell_id}-{seed}")
    out = []
    for repeat in range(repeats):
        repeat_median = median_s * (1 + rng.uniform(-repeat_spread, repeat_spread))
        out.append(ok_record(run_id, cell_id, repeat,
                             steps(repeat_median, seed=rng.randrange(10**6)), **record_options))
    return out
