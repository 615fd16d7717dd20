"""The time-to-target protocol (`bigbench converge`): train on a real loader until a held-out target.

Each cell trains its model on its task's data (`bigtrain.data.tasks`) from the job's seed, with a
real loader (shuffled mini-batches, epoch after epoch), and evaluates on the held-out split every
`eval_every` steps. It stops at the first evaluation at the target (`ok`, with the steps, seconds
and joules it took), when a budget runs out (`not_reached`, with the best value seen), or when the
loss diverges (`diverged`, keeping the curve up to the last finite evaluation).

What the clocks count (documented in docs/converge.md, "What the clocks count"):

- `step_time_s` and friends: the training steps only (forward, backward, optimizer), as in the
  step-time protocol; neither data loading nor evaluation is inside them;
- `time_to_target_s`: wall seconds of training, data loading included (its share is
  `data_time_s`), held-out evaluation excluded (`eval_time_s`): evaluating more often must not make
  an optimizer look slower, while a loader is part of what training costs;
- `energy_to_target_j`: the NVML energy counter over the run (which ends at the target), less the
  evaluations' share by time; None on the CPU, with the telemetry reason.

This module stays free of torch at import time. Its settings (`ConvergeSettings`, which travels in
the spec and the job) live in `bigtrain/cells/settings.py`; the loop lives in `converge_loop.py`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bigtrain.measure.contract import json_float
from bigtrain.cells.settings import CONVERGE, ConvergeSettings

if TYPE_CHECKING:  # pragma: no cover - types only
    from bigtrain.measure.contract import BuiltCell, Instruments
    from bigtrain.measure.converge_loop import ConvergeRun
    from bigtrain.measure.memory import PeakMemory

@dataclass(frozen=True, kw_only=True)
class ConvergeResult:
    """What one converge cell measured: the run's figures, peak memory, telemetry."""

    run: ConvergeRun
    peak: PeakMemory
    telemetry: dict[str, Any] | None
    telemetry_reason: str | None

    def record_fields(self, built: BuiltCell) -> dict[str, Any]:
        """CellRecord fields (status and reason included) from this result."""
        from bigtrain.measure.anatomy import optimizer_state_by_dtype
        from bigtrain.results.schema import PhaseTimes, StepTimeStats

        run = self.run
        stats = StepTimeStats.from_samples(run.step_times_s)
        fields: dict[str, Any] = {
            "status": run.status,
            "reason": run.reason,
            "protocol": CONVERGE,
            "seed": run.seed,
            "target_metric": run.target.metric,
            "target_value": run.target.value,
            "target_direction": run.target.direction,
            "steps_to_target": run.steps if run.status == "ok" else None,
            "time_to_target_s": run.train_s if run.status == "ok" else None,
            "energy_to_target_j": self.energy_to_target_j(),
            "data_time_s": run.data_s,
            "eval_time_s": run.eval_s,
            "best_value": run.best_value,
            "final_value": run.curve["eval_metric"][-1] if run.curve["eval_metric"] else None,
            "final_eval_loss": run.curve["eval_loss"][-1] if run.curve["eval_loss"] else None,
            "curve": {key: list(values) for key, values in run.curve.items()},
            "step_time_s": stats,
            "step_times_s": run.step_times_s,
            "phase_time_s": PhaseTimes(
                forward=statistics.median(run.forward_s),
                backward=statistics.median(run.backward_s),
                optimizer=statistics.median(run.optimizer_s),
            ),
            "phase_times_s": {"forward": run.forward_s, "backward": run.backward_s,
                              "optimizer": run.optimizer_s},
            "warmup_steps": 0,
            "warmup_s": 0.0,
            "window_s": run.train_s,
            "items_per_s": built.workload.items_per_step / stats.median,
            "peak_mem_allocated_bytes": self.peak.allocated_bytes,
            "peak_mem_reserved_bytes": self.peak.reserved_bytes,
            "peak_rss_bytes": self.peak.rss_bytes,
            # the state the optimizer holds at the end of training (its shapes never change)
            "optimizer_state_bytes": sum(optimizer_state_by_dtype(built.optimizer).values()),
            "loss_first": json_float(run.loss_first),
            "loss_last": json_float(run.loss_last),
            "telemetry": self.telemetry,
            "telemetry_reason": self.telemetry_reason,
            "compile_s": run.compile_s,
        }
        return fields

    def energy_to_target_j(self) -> float | None:
        """The run's NVML energy less the evaluations' and compilation's share by time, for a cell
        that reached its target; None otherwise (and on the CPU, where `telemetry_reason` says
        why)."""
        run = self.run
        energy_j = (self.telemetry or {}).get("energy_j")
        if run.status != "ok" or energy_j is None:
            return None
        return float(energy_j) * (run.train_s / run.span_s) if run.span_s > 0 else None

    def extra(self) -> dict[str, Any]:
        """Protocol notes for the record's `extra`: the task, its data and the loader."""
        run = self.run
        out: dict[str, Any] = {"peak_rss_method": self.peak.rss_method, "converge_task": run.task,
                               "epochs": run.epochs, "evaluations": run.evaluations,
                               "train_samples": run.train_samples,
                               "eval_samples": run.eval_samples,
                               "converge_budget": {"max_steps": run.settings.max_steps,
                                                   "max_time_s": run.settings.max_time_s,
                                                   "eval_every": run.settings.eval_every}}
        if run.schedule is not None and run.schedule.get("schedule") != "constant":
            out["lr_schedule"] = dict(run.schedule)
        if self.energy_to_target_j() is None and run.status == "ok":
            out["energy_to_target_reason"] = (self.telemetry_reason
                                              or "the NVML energy counter gave no reading")
        return out


class ConvergeProtocol:
    """Train on the task's loader until the held-out target, a budget, or divergence."""

    name = CONVERGE
    settings_type = ConvergeSettings

    def run(self, built: BuiltCell, settings: ConvergeSettings,
            instruments: Instruments) -> ConvergeResult:
        """Train and evaluate; telemetry covers the whole run (training and evaluations)."""
        from bigtrain.measure.converge_loop import train_to_target

        sampler = instruments.sampler
        instruments.memory.window_open()
        sampler.start()
        try:
            run = train_to_target(built, settings)
        finally:
            sampler.stop()
        peak = instruments.memory.stop()
        telemetry, telemetry_reason = sampler.result(
            window_s=run.span_s, steps=run.steps,
            items=built.workload.items_per_step * run.steps,
        )
        return ConvergeResult(run=run, peak=peak, telemetry=telemetry,
                              telemetry_reason=telemetry_reason)
