"""The time-to-target protocol on real (tiny) runs: outcomes, the curve, seeds, records.

These train for real on the CPU; they check what the protocol decides and records (statuses,
reasons, curve shape, determinism), never how fast anything was.
"""

from __future__ import annotations

import math

import pytest

from bigtrain.cells.matrix import DeviceInventory, expand
from bigtrain.cells.settings import ConvergeSettings
from bigtrain.results.schema import CURVE_COLUMNS, CellRecord
from bigtrain.run.cell import run_cell
from bigtrain.run.job import CellJob
from bigtrain.cells.spec import spec_from_preset

CPU = DeviceInventory(cuda_count=0)


def _run(model: str = "mlp:seed", optimizer: str = "sgd", *, seed: int = 0, lr: str = "default",
         batch_norm: str = "on", **budget: float) -> CellRecord:
    """One converge cell run in this process."""
    settings = {"max_steps": 2000, "max_time_s": 120.0, "eval_every": 10, **budget}
    spec = spec_from_preset("quick", {
        "model": model, "optimizer": optimizer, "precision": "fp32", "device": "cpu", "lr": lr,
        "batch_norm": batch_norm, "protocol": "converge", **settings})
    [cell] = [c for c in expand(spec, CPU) if c.status == "pending"]
    job = CellJob(run_id="t", cell=cell, repeat=0, device="cpu", settings=spec.converge,
                  protocol="converge", seed=seed)
    return run_cell(job)


def _check_curve(record: CellRecord) -> None:
    curve = record.curve
    assert set(curve) == set(CURVE_COLUMNS)
    lengths = {len(values) for values in curve.values()}
    assert len(lengths) == 1, f"curve columns differ in length: {lengths}"
    for column, values in curve.items():
        assert all(math.isfinite(v) for v in values), column
    assert curve["step"] == sorted(set(curve["step"])), "steps must strictly increase"
    assert curve["wall_s"] == sorted(curve["wall_s"]), "wall seconds must not go back"


def test_a_reachable_target_is_ok_with_steps_seconds_and_the_curve() -> None:
    record = _run("mlp:seed", "sgd")
    assert record.status == "ok", record.reason
    assert record.protocol == "converge" and record.seed == 0
    assert (record.target_metric, record.target_direction) == ("mse", "min")
    assert record.steps_to_target == record.curve["step"][-1]
    assert record.steps_to_target % 10 == 0  # stopped at the first evaluation at target
    assert record.time_to_target_s == record.curve["wall_s"][-1] > 0
    assert record.final_value == record.best_value <= record.target_value
    assert all(v > record.target_value for v in record.curve["eval_metric"][:-1])
    assert record.lr_used == 0.01  # sgd's registry default
    assert record.step_time_s is not None and record.step_time_s.n == record.steps_to_target
    # The loader's share is inside the time to target; evaluations are outside it.
    assert 0 < record.data_time_s < record.time_to_target_s
    assert record.eval_time_s > 0
    assert record.energy_to_target_j is None and record.telemetry_reason  # no NVML on the CPU
    _check_curve(record)
    assert CellRecord.from_json(record.to_json()) == record  # valid against RECORD_RULES


def test_a_budget_too_small_for_the_target_is_not_reached_with_its_best_value() -> None:
    record = _run("mlp:seed", "sgd", max_steps=3, eval_every=1)
    assert record.status == "not_reached"
    assert record.steps_to_target is None and record.time_to_target_s is None
    assert record.best_value == min(record.curve["eval_metric"])
    assert record.curve["step"] == [1.0, 2.0, 3.0]
    assert "did not reach the target <= 0.02" in record.reason
    assert f"{record.best_value:.4g}" in record.reason and "3 steps" in record.reason
    _check_curve(record)
    CellRecord.from_json(record.to_json())


def test_a_time_budget_ends_the_cell_at_an_evaluation() -> None:
    record = _run("mlp:seed", "sgd", lr="1e-6", max_time_s=0.3, eval_every=10**6, max_steps=10**7)
    assert record.status == "not_reached"
    assert len(record.curve["step"]) == 1  # the budget's own evaluation
    assert record.curve["wall_s"][0] >= 0.3
    assert "0.3 s" in record.reason


def test_a_diverging_learning_rate_is_diverged_and_keeps_only_finite_points() -> None:
    record = _run("mlp:seed", "sgd", lr="1000", eval_every=5, max_steps=200)
    assert record.status == "diverged"
    assert "diverged" in record.reason
    assert record.lr_used == 1000.0
    _check_curve(record)  # points up to the last finite one, none after
    CellRecord.from_json(record.to_json())


def test_the_same_seed_gives_the_same_curve_and_another_seed_another() -> None:
    first = _run("mlp:digits", "adam", max_steps=40, eval_every=10, seed=3)
    again = _run("mlp:digits", "adam", max_steps=40, eval_every=10, seed=3)
    other = _run("mlp:digits", "adam", max_steps=40, eval_every=10, seed=4)
    for column in ("step", "train_loss", "eval_loss", "eval_metric"):
        assert first.curve[column] == again.curve[column], column
    assert first.curve["train_loss"] != other.curve["train_loss"]
    assert (first.seed, other.seed) == (3, 4)


@pytest.mark.parametrize("model", ["cnn:digits", "rnn:copy", "transformer:copy", "mlp:wine",
                                   "mlp:breast-cancer"])
def test_every_task_trains_and_records_a_valid_curve(model: str) -> None:
    record = _run(model, "adam", max_steps=4, eval_every=2)
    assert record.status in ("ok", "not_reached"), record.reason
    assert record.curve["step"] == [2.0, 4.0] or record.status == "ok"
    _check_curve(record)
    CellRecord.from_json(record.to_json())


def test_converge_settings_name_the_bad_budget() -> None:
    from bigtrain.common.errors import BadInput

    with pytest.raises(BadInput, match="max_steps must be an integer >= 1, got 0"):
        ConvergeSettings(max_steps=0)
    with pytest.raises(BadInput, match="max_time_s must be a number of seconds > 0"):
        ConvergeSettings(max_time_s=float("nan"))
    with pytest.raises(BadInput, match="eval_every must be an integer >= 1, got True"):
        ConvergeSettings(eval_every=True)
