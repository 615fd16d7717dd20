"""What a measuring protocol is handed and hands back: the built cell, its instruments, and the
one rule for a float in a record. Below the protocols, so that they and the sweep's builder
(`run/build.py`) share these types without importing each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - types only
    import torch

    from bigtrain.measure.memory import PeakMemoryTracker
    from bigtrain.measure.step_loop import TrainingStep
    from bigtrain.workloads.base import Workload


@dataclass(frozen=True, kw_only=True)
class BuiltCell:
    """A cell ready to measure."""

    workload: Workload
    optimizer: torch.optim.Optimizer
    #: The training step: a TrainingStep, or its captured CUDA graph (`cuda_graphs` on).
    step: TrainingStep
    device: torch.device
    device_name: str
    param_count: int
    #: A count of graphs compiled so far, for cells that compile (None otherwise): warm-up
    #: watches it so that no compilation happens inside the window.
    compile_probe: Callable[[], int] | None
    #: What the record's `extra` says about the set-up.
    notes: dict[str, Any]
    #: The cell's model name, batch size and seed (a protocol that loads its own data needs them).
    model_name: str = ""
    batch_size: int = 0
    seed: int = 0
    #: The learning rate the optimizer was built with (the `lr` axis resolved).
    lr_used: float | None = None
    #: The lr schedule of a converge run (the `schedule` axis; `bigtrain.training.schedules`).
    schedule: str = "constant"


@dataclass(frozen=True, kw_only=True)
class Instruments:
    """What a protocol measures with besides the clock: peak memory (started before the build)
    and the telemetry sampler (started at the window's opening, stopped at its close)."""

    memory: PeakMemoryTracker
    sampler: Any  # bigtrain.measure.telemetry.TelemetrySampler
    #: A profiled window to run after the timed one (bigtrain.measure.profile_settings), or None.
    profile: Any = None


def json_float(value: float) -> float | None:
    """JSON has no NaN: a non-finite loss is stored as null (the status says diverged)."""
    return value if math.isfinite(value) else None
