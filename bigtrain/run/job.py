"""The job: what a worker is handed to run one cell. Picklable plain data, below everything in
`run/` that hands a job on (executors, workers, ranks, record builders)."""

from __future__ import annotations

from dataclasses import dataclass

from bigtrain.cells.matrix import Cell
from bigtrain.cells.settings import ConvergeSettings, StepTimeSettings
from bigtrain.measure.profile_settings import ProfileSettings
from bigtrain.measure.protocols import STEP_TIME


@dataclass(frozen=True, kw_only=True)
class CellJob:
    """What a worker needs to run one cell: picklable, no torch objects."""

    run_id: str
    cell: Cell
    repeat: int
    device: str  # concrete: "cpu" or "cuda:N"
    #: The protocol's settings, built once from the spec (a StepTimeSettings for `step_time`, a
    #: ConvergeSettings for `converge`).
    settings: StepTimeSettings | ConvergeSettings
    protocol: str = STEP_TIME
    seed: int = 0
    telemetry_interval_s: float = 0.1
    #: The executor's limit for this cell, where it says (a data-parallel cell stops its ranks a
    #: little before it, to name the rank at fault).
    timeout_s: float | None = None
    #: Cap the worker's CUDA caching allocator to this share of the device's memory before the
    #: cell is built (`bigbench fit --memory-fraction`); None: no cap.
    cuda_memory_fraction: float | None = None
    #: Profile the cell after its timed window (`--profile`): a ProfileSettings, or None.
    profile: ProfileSettings | None = None
