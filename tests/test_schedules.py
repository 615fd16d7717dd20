"""The lr schedule axis (issue 25) and the `auto` implementation: the schedule's arithmetic, what
the matrix makes of each combination, and real converge cells that run under a schedule."""

from __future__ import annotations

import math
import time

import pytest
import torch

from bigtrain.cells.axes import AXIS_BY_NAME, SCHEDULE_CHOICES
from bigtrain.cells.matrix import DeviceInventory, cell_id_for, expand
from bigtrain.cells.settings import ConvergeSettings
from bigtrain.cells.spec import spec_from_preset
from bigtrain.common.errors import BadInput
from bigtrain.measure.converge_loop import train_to_target
from bigtrain.results.schema import CellRecord
from bigtrain.run.build import build_cell
from bigtrain.run.cell import run_cell
from bigtrain.run.job import CellJob
from bigtrain.training.optim import OPTIMIZERS, preferred_impl, resolve_optimizer
from bigtrain.training.schedules import (SCHEDULES, WARMUP_FRACTION, LrSchedule, lr_factor,
                                         warmup_steps)

CPU = DeviceInventory(cuda_count=0)


def _converge_spec(**axes: str):
    settings = {"max_steps": 200, "max_time_s": 60.0, "eval_every": 10}
    return spec_from_preset("quick", {"model": "mlp:digits", "precision": "fp32", "device": "cpu",
                                      "impl": "foreach", "batch_norm": "off", "batch_size": "default",
                                      "compile": "off", "protocol": "converge", **settings,
                                      **axes})


# -- the arithmetic ------------------------------------------------------------------------------
def test_the_axis_names_the_schedules_the_training_side_defines() -> None:
    assert SCHEDULE_CHOICES == tuple(SCHEDULES)
    assert AXIS_BY_NAME["schedule"].default == ("constant",)


def test_constant_is_one_at_every_step() -> None:
    assert {lr_factor("constant", step, 100) for step in range(0, 250, 7)} == {1.0}


def test_cosine_runs_from_the_peak_to_zero_over_the_horizon() -> None:
    assert lr_factor("cosine", 0, 100) == 1.0
    assert lr_factor("cosine", 50, 100) == pytest.approx(0.5)
    assert lr_factor("cosine", 25, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor("cosine", 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor("cosine", 400, 100) == pytest.approx(0.0, abs=1e-12)  # past it: the last value
    factors = [lr_factor("cosine", step, 100) for step in range(101)]
    assert factors == sorted(factors, reverse=True)


def test_warmup_cosine_climbs_linearly_then_decays() -> None:
    total = 600
    warm = warmup_steps("warmup-cosine", total)
    assert warm == round(WARMUP_FRACTION * total) == 30
    assert [lr_factor("warmup-cosine", s, total) for s in (0, 1, 14, 29)] == pytest.approx(
        [1 / 30, 2 / 30, 15 / 30, 1.0])
    assert lr_factor("warmup-cosine", 30, total) == 1.0  # the cosine starts at the peak
    assert lr_factor("warmup-cosine", 30 + 285, total) == pytest.approx(0.5)
    decay = [lr_factor("warmup-cosine", s, total) for s in range(30, total + 1)]
    assert decay == sorted(decay, reverse=True) and decay[-1] == pytest.approx(0, abs=1e-12)
    # a horizon too short for 5% still warms up over one step
    assert warmup_steps("warmup-cosine", 3) == 1 and warmup_steps("cosine", 600) == 0


def test_a_bad_schedule_or_horizon_is_refused() -> None:
    with pytest.raises(ValueError, match="valid: constant, cosine, warmup-cosine"):
        lr_factor("linear", 0, 10)
    with pytest.raises(ValueError, match="horizon"):
        LrSchedule(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1), "cosine", 0)


def test_each_group_keeps_its_own_peak_and_a_tensor_lr_is_filled_in_place() -> None:
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.02}])
    tensor_lr = torch.tensor(0.5)
    optimizer.param_groups[1]["lr"] = tensor_lr
    schedule = LrSchedule(optimizer, "cosine", 10)
    for _ in range(6):  # steps 0..5: the sixth step runs at factor(5) = 0.5
        schedule.before_step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert optimizer.param_groups[1]["lr"] is tensor_lr  # same tensor: a compiled step keeps it
    assert float(tensor_lr) == pytest.approx(0.25)
    assert schedule.describe() == {"schedule": "cosine", "horizon_steps": 10, "warmup_steps": 0,
                                   "steps_scheduled": 6, "last_lr_factor": pytest.approx(0.5)}


# -- the matrix ----------------------------------------------------------------------------------
def test_a_schedule_outside_converge_is_bad_input_naming_the_choices() -> None:
    spec = spec_from_preset("quick", {"model": "mlp:digits", "optimizer": "adamw",
                                      "schedule": "cosine"})
    with pytest.raises(BadInput, match="schedule cosine.*bigbench converge.*valid schedules "
                                       "here: constant"):
        expand(spec, CPU)


def test_a_bad_schedule_name_lists_the_valid_ones() -> None:
    with pytest.raises(BadInput, match="warmup-cosine"):
        _converge_spec(optimizer="adamw", schedule="linear")


def test_a_constant_cell_keeps_the_id_it_had_before_the_axis() -> None:
    [cell] = expand(_converge_spec(optimizer="adamw"), CPU)
    axes = {k: v for k, v in cell.axes().items() if k != "schedule"}
    assert cell.schedule == "constant" and cell.cell_id == cell_id_for(axes)
    [scheduled] = expand(_converge_spec(optimizer="adamw", schedule="cosine"), CPU)
    assert scheduled.cell_id != cell.cell_id and "cosine" in scheduled.label


def test_schedule_free_under_a_schedule_is_skipped_and_a_compiled_step_unsupported() -> None:
    spec = _converge_spec(optimizer="adamw,sgd", impl="foreach,compiled",
                          schedule="constant,warmup-cosine")
    by_axes = {(c.optimizer, c.impl, c.schedule): c for c in expand(spec, CPU)}
    assert by_axes[("adamw", "foreach", "warmup-cosine")].status == "pending"
    compiled = by_axes[("sgd", "compiled", "warmup-cosine")]
    assert compiled.status == "unsupported" and "recompile" in compiled.reason
    assert by_axes[("sgd", "compiled", "constant")].status == "pending"
    # Schedule-Free (the optimizers extra) replaces the schedule; its flag says so without it.
    assert resolve_optimizer("schedulefree-adamw").replaces_schedule
    assert [n for n in OPTIMIZERS.names() if OPTIMIZERS.get(n).replaces_schedule] == [
        "schedulefree-adamw"]


def test_schedule_free_under_a_schedule_is_skipped_when_its_package_is_here() -> None:
    pytest.importorskip("schedulefree")
    spec = _converge_spec(optimizer="schedulefree-adamw", impl="foreach",
                          schedule="constant,cosine")
    cells = {c.schedule: c for c in expand(spec, CPU)}
    assert cells["constant"].status == "pending"
    assert cells["cosine"].status == "skipped"
    assert "Schedule-Free" in cells["cosine"].reason and "constant" in cells["cosine"].reason


def test_auto_names_each_optimizers_own_implementation() -> None:
    assert preferred_impl(resolve_optimizer("adamw"), "cpu") == "foreach"
    assert preferred_impl(resolve_optimizer("muon"), "cpu") == "forloop"  # torch has no foreach Muon
    lion = OPTIMIZERS.get("lion")
    assert lion is not None and preferred_impl(lion, "cpu") == "native"  # whether installed or not
    spec = _converge_spec(optimizer="adamw,muon", impl="auto,foreach")
    cells = expand(spec, CPU)
    # auto is resolved before the id: adamw's auto cell is its foreach cell, listed once
    assert sorted((c.optimizer, c.impl, c.status) for c in cells) == [
        ("adamw", "foreach", "pending"), ("muon", "foreach", "unsupported"),
        ("muon", "forloop", "pending")]


# -- real converge cells -------------------------------------------------------------------------
def test_a_scheduled_converge_cell_trains_at_the_scheduled_lr_and_says_so() -> None:
    spec = _converge_spec(optimizer="adamw", schedule="warmup-cosine")
    [cell] = expand(spec, CPU)
    built = build_cell(cell, torch.device("cpu"), seed=0)
    settings = ConvergeSettings(max_steps=40, max_time_s=60.0, eval_every=10)
    run = train_to_target(built, settings)
    peak = 1e-3  # adamw's registry lr
    last_step = run.steps - 1
    assert built.optimizer.param_groups[0]["lr"] == pytest.approx(
        peak * lr_factor("warmup-cosine", last_step, 40))
    assert run.schedule == {"schedule": "warmup-cosine", "horizon_steps": 40, "warmup_steps": 2,
                            "steps_scheduled": run.steps,
                            "last_lr_factor": pytest.approx(lr_factor("warmup-cosine",
                                                                      last_step, 40))}
    assert run.compile_s is None  # nothing in this cell compiles


def test_the_record_of_a_scheduled_cell_carries_the_schedule() -> None:
    spec = _converge_spec(optimizer="sgd", schedule="cosine")
    [cell] = expand(spec, CPU)
    record = run_cell(CellJob(run_id="t", cell=cell, repeat=0, device="cpu",
                              settings=spec.converge, protocol="converge", seed=0))
    assert record.status in ("ok", "not_reached"), record.reason
    assert record.schedule == "cosine"
    assert record.extra["lr_schedule"]["horizon_steps"] == 200
    assert record.extra["lr_schedule"]["steps_scheduled"] == len(record.step_times_s)
    assert CellRecord.from_json(record.to_json()) == record


def test_a_step_that_compiles_is_trained_but_kept_off_the_training_clock() -> None:
    """dynamo's graph counter is the boundary faked here: it moves during the first step, which
    takes 0.3 s longer, as a first compiled step does."""
    spec = _converge_spec(optimizer="sgd")
    [cell] = expand(spec, CPU)
    built = build_cell(cell, torch.device("cpu"), seed=0)
    graphs = {"count": 0}

    class CompilingStep:
        """The cell's real step, whose first call compiles (the counter moves, 0.3 s pass)."""

        def __init__(self, real):  # noqa: ANN001
            self.real, self.autocast = real, real.autocast

        def __call__(self, mark):  # noqa: ANN001, ANN204
            if graphs["count"] == 0:
                graphs["count"] = 1
                time.sleep(0.3)
            return self.real(mark)

    import dataclasses

    built = dataclasses.replace(built, step=CompilingStep(built.step),
                                compile_probe=lambda: graphs["count"])
    started = time.perf_counter()
    run = train_to_target(built, ConvergeSettings(max_steps=30, max_time_s=60.0, eval_every=10))
    wall_s = time.perf_counter() - started
    assert run.compile_s is not None and run.compile_s >= 0.3
    assert run.steps == 30 and len(run.step_times_s) == 29  # trained, but not a sample
    assert run.train_s + run.compile_s + run.eval_s <= wall_s
