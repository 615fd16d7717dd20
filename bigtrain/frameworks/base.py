"""The contract between bigtrain and a non-PyTorch framework backend (JAX, TensorFlow).

A backend measures one cell in its own framework, in the worker process that runs the cell (one
framework per process: two frameworks in one process fight over threads and device memory), and
returns a `FrameworkMeasurement`; the run side turns that into a `CellRecord` exactly as it does for
torch cells, so compare, ab, report and telemetry see no difference.

Pure Python: importing this module imports no framework. A backend imports its framework only in
`measure` and `version_info`, so `bigbench list` and the matrix can ask `missing_reason` cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Where a FLOP count came from: the framework's own compiled cost analysis, or the torch twin's
#: analytic count (the same model, so the same arithmetic).
FLOPS_SOURCES = ("framework-cost-analysis", "torch-twin", "none")


@dataclass(frozen=True, kw_only=True)
class FrameworkMeasurement:
    """What a backend measured for one step-time cell (timed window only in `step_times_s`)."""

    step_times_s: tuple[float, ...]  # one per optimizer step of the timed window
    warmup_s: float                  # wall time of the warm-up steps, outside the window
    compile_s: float | None          # first-step compilation (jit / tf.function), outside it
    samples_per_step: int            # the global batch of one step
    param_count: int                 # trainable parameters; equals the torch twin's (tested)
    flops_per_step: float | None     # training FLOPs of one step, or None
    flops_source: str                # one of FLOPS_SOURCES
    peak_memory_bytes: int | None    # the framework's own peak, where it reports one
    losses: tuple[float, ...] = ()   # losses seen in the window (a NaN makes the cell diverged)
    threads: Mapping[str, Any] = field(default_factory=dict)   # the thread settings in force
    versions: Mapping[str, str] = field(default_factory=dict)  # framework, backend, device kind


class FrameworkBackend(Protocol):
    """One framework. `bigtrain.frameworks.BACKENDS` maps a `framework` axis value to one."""

    name: str          # the axis value: "jax", "tensorflow"
    install_line: str  # e.g. "pip install -e '.[jax]'", shown when the framework is missing

    def missing_reason(self) -> str | None:
        """Why this framework cannot run here (not installed, import fails), or None."""

    def version_info(self) -> Mapping[str, str]:
        """Versions and backends for `bigbench list` and the environment fingerprint."""

    def unsupported_reason(self, cell: Any) -> str | None:
        """Why this backend cannot run `cell` (a `bigtrain.cells.spec.Cell`): a family or size it
        does not implement, an impl/precision/device it has no counterpart for; None when it can.
        Decided before anything runs: such cells are `skipped` with the reason."""

    def measure(self, cell: Any, settings: Any, seed: int) -> FrameworkMeasurement:
        """Build `cell`'s model and optimizer, warm up, compile, then time `settings`' window
        (a `bigtrain.cells.settings.StepTimeSettings`), synchronising only at the window's ends
        and per step where the framework needs it to time a step (`block_until_ready`)."""
