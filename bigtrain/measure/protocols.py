"""Measurement protocols: how a built cell is turned into measured figures.

A protocol is a registry entry with a name, the settings type it takes, and `run(built, settings,
instruments)`, which returns a frozen result that knows its own record fields. The step-time
protocol (warm up, then time one window of training steps) is the first; the time-to-target
protocol (`bigtrain.measure.converge`: train on a real loader until a held-out target) registers
beside it with its own settings and result, so that the worker, the job and the record builder need
no special case.

This module stays free of torch at import time: settings travel in `CellJob`, which the sweep
driver (analysing side of the CLI) imports.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bigtrain.common.errors import unknown_choice
from bigtrain.common.registry import Registry

from bigtrain.measure.contract import Instruments, json_float
from bigtrain.measure.converge import CONVERGE, ConvergeProtocol
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.common.errors import CellSkipped  # noqa: F401 - its home was here

if TYPE_CHECKING:  # pragma: no cover - types only
    from bigtrain.measure.contract import BuiltCell
    from bigtrain.measure.memory import PeakMemory
    from bigtrain.measure.step_loop import LoopResult, WindowResult

STEP_TIME = "step_time"
#: The record's note where a step ran as one unit and its phases could not be timed apart.
PHASES_NOT_SEPARABLE = "the step ran as one replayed CUDA graph: its phases are not timed apart"


class MeasurementProtocol(Protocol):
    """One way of measuring a built cell."""

    name: str
    settings_type: type

    def run(self, built: BuiltCell, settings: Any, instruments: Instruments) -> ProtocolResult:
        """Measure `built` and return the frozen result."""
        ...


class ProtocolResult(Protocol):
    """A protocol's figures; `record_fields` maps them onto CellRecord fields (+ `extra`)."""

    def record_fields(self, built: BuiltCell) -> dict[str, Any]: ...
    def extra(self) -> dict[str, Any]: ...


@dataclass(frozen=True, kw_only=True)
class StepTimeResult:
    """What the step-time protocol measured: the loop's raw figures, peak memory, telemetry."""

    loop: LoopResult
    peak: PeakMemory
    telemetry: dict[str, Any] | None
    telemetry_reason: str | None
    host_load: Any = None  # bigtrain.measure.host_load.HostLoad over the window, or None
    #: A checkpointed cell's companion window with checkpointing paused (after the timed window,
    #: outside its memory and telemetry), or None; `recompute_reason` says why it is missing.
    recompute: WindowResult | None = None
    recompute_reason: str | None = None
    #: The profiled window's outcome (bigtrain.measure.profile_cell.ProfileOutcome), or None
    #: where no profile was asked for.
    profile: Any = None

    def recompute_share_pct(self) -> float | None:
        """The share of the checkpointed step spent recomputing forward activations: the rise of
        the median backward phase over the companion window's (which saved its activations),
        over the checkpointed median step, in percent (never below 0)."""
        window, paused = self.loop.window, self.recompute
        if paused is None or not window.backward_s or not paused.backward_s:
            return None
        rise_s = statistics.median(window.backward_s) - statistics.median(paused.backward_s)
        return 100.0 * max(0.0, rise_s) / statistics.median(window.step_times_s)

    def record_fields(self, built: BuiltCell) -> dict[str, Any]:
        """CellRecord fields (status and reason included) from this result."""
        from bigtrain.results.schema import PhaseTimes, StepTimeStats

        loop, window = self.loop, self.loop.window
        stats = StepTimeStats.from_samples(window.step_times_s)
        status, reason = "ok", None
        if not (math.isfinite(loop.loss_first) and math.isfinite(loop.loss_last)):
            status = "diverged"
            reason = f"non-finite loss: first {loop.loss_first}, last {loop.loss_last}"
        return {
            "status": status,
            "reason": reason,
            "step_time_s": stats,
            "step_times_s": window.step_times_s,
            "phase_time_s": PhaseTimes(
                forward=statistics.median(window.forward_s),
                backward=statistics.median(window.backward_s),
                optimizer=statistics.median(window.optimizer_s),
            ) if window.forward_s else None,
            "phase_times_s": {"forward": window.forward_s, "backward": window.backward_s,
                              "optimizer": window.optimizer_s} if window.forward_s else None,
            "warmup_steps": loop.warmup_steps,
            "warmup_s": loop.warmup_s,
            "window_s": window.window_s,
            "items_per_s": built.workload.items_per_step / stats.median,
            "peak_mem_allocated_bytes": self.peak.allocated_bytes,
            "peak_mem_reserved_bytes": self.peak.reserved_bytes,
            "peak_rss_bytes": self.peak.rss_bytes,
            "optimizer_state_bytes": optimizer_state_bytes(built.optimizer),
            "loss_first": json_float(loop.loss_first),
            "loss_last": json_float(loop.loss_last),
            "telemetry": self.telemetry,
            "telemetry_reason": self.telemetry_reason,
            "host_load": self.host_load.to_json() if self.host_load is not None else None,
            "recompute_share_pct": self.recompute_share_pct(),
            **(self.profile.record_fields() if self.profile is not None else {}),
        }

    def extra(self) -> dict[str, Any]:
        """Protocol notes for the record's `extra`."""
        out: dict[str, Any] = {"warmup_settled": self.loop.warmup_settled,
                               "peak_rss_method": self.peak.rss_method}
        if self.loop.compile is not None:
            out["compile"] = dataclasses.asdict(self.loop.compile)
        if not self.loop.window.forward_s:
            out["phase_times"] = PHASES_NOT_SEPARABLE
        if self.loop.window.clock_events_made_in_window:
            out["clock_events_made_in_window"] = self.loop.window.clock_events_made_in_window
        if self.recompute is not None:
            out["no_checkpoint_step_time_s"] = statistics.median(self.recompute.step_times_s)
            if self.recompute.backward_s:
                out["no_checkpoint_backward_s"] = statistics.median(self.recompute.backward_s)
        if self.recompute_reason:
            out["recompute_reason"] = self.recompute_reason
        return out


def optimizer_state_bytes(optimizer: Any) -> int:
    """Bytes held by the tensors in `optimizer.state` (momentum, moments, step counters).

    Read after the window: the optimizer makes its state tensors at its first step and keeps
    their shapes, so this is the state the first step allocated (Adam in fp32: 2x the parameter
    bytes plus a 4-byte step counter per parameter tensor; SGD with momentum: 1x).
    """
    import torch

    return sum(value.numel() * value.element_size()
               for state in optimizer.state.values() for value in state.values()
               if isinstance(value, torch.Tensor))


class StepTimeProtocol:
    """Warm up until step time settles (and nothing compiles any more), then time one window."""

    name = STEP_TIME
    settings_type = StepTimeSettings

    def run(self, built: BuiltCell, settings: StepTimeSettings,
            instruments: Instruments) -> StepTimeResult:
        """Run the warm-up and the window; telemetry covers exactly the window."""
        from bigtrain.measure.host_load import WindowLoad, cores_used_by
        from bigtrain.measure.step_loop import run_loop

        sampler = instruments.sampler
        load = WindowLoad(cores_used=cores_used_by(built.device), device=str(built.device))
        # Stretch the window on a GPU so NVML can resolve it (a too-short window is marked).
        settings = settings.with_min_window(sampler.min_window_s)

        def window_open() -> None:
            instruments.memory.window_open()
            sampler.start()
            load.open()  # last before the window opens, first after it closes

        def window_close() -> None:
            load.close()
            sampler.stop()

        loop = run_loop(built.step, built.device, settings, on_window_open=window_open,
                        on_window_close=window_close, compile_probe=built.compile_probe)
        peak = instruments.memory.stop()
        steps = len(loop.window.step_times_s)
        telemetry, telemetry_reason = sampler.result(
            window_s=loop.window.window_s, steps=steps,
            items=built.workload.items_per_step * steps,
        )
        recompute, recompute_reason = recompute_window(built, settings, loop)
        return StepTimeResult(loop=loop, peak=peak, telemetry=telemetry,
                              telemetry_reason=telemetry_reason, host_load=load.result(),
                              recompute=recompute, recompute_reason=recompute_reason,
                              profile=profiled_window(built, instruments.profile, loop))


def profiled_window(built: BuiltCell, settings: Any, loop: LoopResult) -> Any:
    """The profiled window of `built`'s step, after its timed window and companion windows (every
    figure of the record is read by then), no longer than about that window: a ProfileOutcome,
    or None when none was asked for."""
    if settings is None:
        return None
    from bigtrain.measure.profile_cell import profile_built, profile_steps_within

    window = loop.window
    most = profile_steps_within(window.window_s, statistics.median(window.step_times_s))
    return profile_built(built, built.step, settings, cell_id=settings.cell_id, max_steps=most)


def recompute_window(built: BuiltCell, settings: StepTimeSettings,
                     loop: LoopResult) -> tuple[WindowResult | None, str | None]:
    """For a checkpointed cell: a second window of the same steps with checkpointing paused, run
    after the timed window (its memory and telemetry are already read), so that the recomputation
    share comes from one process, one model and one batch rather than from a twin cell measured at
    another time. (None, None) for a cell without checkpointing; (None, why) where it cannot run.
    """
    if not built.notes.get("checkpointing_method"):
        return None, None
    if built.compile_probe is not None:
        return None, ("not measured for a compiled cell: pausing checkpointing would recompile "
                      "the model inside the companion window")
    if not getattr(built.step, "separable_phases", True):
        return None, "not measured: the step's phases are not timed apart"
    import torch

    from bigtrain.measure.step_loop import measure_window, synchronize
    from bigtrain.training.levers import checkpointing_paused

    try:
        with checkpointing_paused(built.workload.model):
            built.step()  # the first step without checkpointing grows the allocator outside it
            synchronize(built.device)
            window = measure_window(built.step, built.device, settings,
                                    expected_step_s=statistics.median(loop.window.step_times_s))
    except torch.OutOfMemoryError:
        return None, "not measured: the step without checkpointing runs out of memory"
    return window, None


PROTOCOLS: Registry[MeasurementProtocol] = Registry("measurement protocol")
PROTOCOLS.register(STEP_TIME, StepTimeProtocol())
PROTOCOLS.register(CONVERGE, ConvergeProtocol())


def resolve_protocol(name: str, where: str = "") -> MeasurementProtocol:
    """The protocol named `name`; BadInput lists the valid names."""
    protocol = PROTOCOLS.get(name)
    if protocol is None:
        raise unknown_choice("measurement protocol", name, PROTOCOLS.names(), where)
    return protocol
