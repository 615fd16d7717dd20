"""Converge data, loader, tasks and the lr axis: pure checks on seeded data, no timing."""

from __future__ import annotations

import pytest
import torch

from bigtrain.cells.axes import AXIS_BY_NAME, value_label
from bigtrain.data import datasets, tasks
from bigtrain.data.loader import TimedBatches, make_loader
from bigtrain.common.errors import BadInput
from bigtrain.cells.matrix import DeviceInventory, cell_id_for, expand
from bigtrain.cells.spec import spec_from_json, spec_from_preset

CPU = DeviceInventory(cuda_count=0)


# -- data ------------------------------------------------------------------------------------------
def test_the_held_out_split_is_fixed_disjoint_and_a_fifth() -> None:
    inputs = torch.arange(100.0).unsqueeze(1)
    split = datasets.holdout_split(inputs, torch.arange(100))
    again = datasets.holdout_split(inputs, torch.arange(100))
    assert torch.equal(split.eval_targets, again.eval_targets)
    assert len(split.eval_targets) == 20 and len(split.train_targets) == 80
    assert not set(split.eval_targets.tolist()) & set(split.train_targets.tolist())
    other = datasets.holdout_split(inputs, torch.arange(100), seed=1)
    assert not torch.equal(split.eval_targets, other.eval_targets)


def test_standardising_uses_the_training_part_only() -> None:
    split = datasets.Split(train_inputs=torch.tensor([[0.0], [2.0]]),
                           train_targets=torch.tensor([0, 1]),
                           eval_inputs=torch.tensor([[4.0]]), eval_targets=torch.tensor([1]))
    scaled = datasets.standardised(split)
    assert scaled.train_inputs.mean().item() == pytest.approx(0.0)
    # (4 - mean 1) / std 1.4142: a held-out value beyond the training range stays beyond it.
    assert scaled.eval_inputs.item() == pytest.approx(3 / 2 ** 0.5)


def test_the_regression_noise_floor_is_what_the_task_says() -> None:
    split = datasets.linear_regression()
    # Least squares on the training part recovers the map; its held-out MSE is the noise floor.
    weights = torch.linalg.lstsq(split.train_inputs, split.train_targets).solution
    floor = torch.mean((split.eval_inputs @ weights - split.eval_targets) ** 2).item()
    assert floor == pytest.approx(datasets.REGRESSION_NOISE_STD ** 2, rel=0.2)
    assert floor < tasks.task_for("mlp:seed").target_value


def test_the_delayed_copy_targets_are_the_inputs_shifted() -> None:
    split = datasets.delayed_copy()
    tokens, targets = split.train_inputs, split.train_targets
    delay = datasets.COPY_DELAY
    assert torch.equal(targets[:, delay:], tokens[:, :-delay])
    assert (targets[:, :delay] == datasets.IGNORE_INDEX).all()
    # The known solution scores exactly 1.0 with the task's metric.
    perfect = torch.nn.functional.one_hot(targets.clamp_min(0), datasets.SEQUENCE_VOCAB).float()
    assert tasks.token_accuracy(perfect, targets) == (float((targets >= 0).sum()),) * 2


@pytest.mark.skipif(not datasets.sklearn_available(), reason="needs the converge extra")
def test_the_shipped_tables_load_with_their_shapes() -> None:
    digits = datasets.tabular("digits")
    assert digits.train_inputs.shape[1] == 64 and len(digits.eval_targets) == 359
    images = datasets.digit_images()
    assert images.train_inputs.shape[1:] == (3, 8, 8)
    assert 0.0 <= images.train_inputs.min() and images.train_inputs.max() <= 1.0
    assert datasets.tabular("wine").train_inputs.shape[1] == 13
    assert datasets.tabular("breast-cancer").train_inputs.shape[1] == 30


# -- loader ----------------------------------------------------------------------------------------
def _orders(seed: int, epochs: int = 2) -> list[list[int]]:
    loader = make_loader(torch.arange(10.0), torch.arange(10), batch_size=5, seed=seed)
    return [[int(i) for batch in loader for i in batch[1]] for _ in range(epochs)]


def test_the_loader_reshuffles_every_epoch_and_repeats_for_a_seed() -> None:
    first, second = _orders(seed=0)
    assert sorted(first) == sorted(second) == list(range(10))  # each epoch sees every example
    assert first != second  # a new order every epoch
    assert _orders(seed=0) == [first, second]  # the same seed, the same orders
    assert _orders(seed=1) != [first, second]


def test_timed_batches_count_epochs_and_drop_the_ragged_tail() -> None:
    loader = make_loader(torch.arange(11.0), torch.arange(11), batch_size=4, seed=0)
    batches = TimedBatches(loader, device=torch.device("cpu"))
    sizes = [len(batches.next()[0]) for _ in range(5)]
    assert sizes == [4] * 5  # 2 full batches an epoch; the 3 left over are dropped
    assert batches.epochs == 2 and batches.data_s > 0


# -- tasks -----------------------------------------------------------------------------------------
def test_targets_compare_in_their_direction() -> None:
    mse, accuracy = tasks.task_for("mlp:seed"), tasks.task_for("mlp:digits")
    assert mse.reached(0.02) and not mse.reached(0.021)
    assert accuracy.reached(0.95) and not accuracy.reached(0.949)
    assert mse.better(0.1, 0.2) and accuracy.better(0.9, 0.8) and accuracy.better(0.1, None)


def test_a_model_without_a_task_or_extra_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_from_preset("quick", {"model": "mlp:digits,mlp:small,mlp:seed", "optimizer": "sgd",
                                      "precision": "fp32", "batch_norm": "on", "device": "cpu",
                                      "protocol": "converge"})
    monkeypatch.setattr(datasets, "sklearn_available", lambda: False)  # the extra not installed
    cells = {c.model: c for c in expand(spec, CPU)}
    assert cells["mlp:seed"].status == "pending"  # synthetic: needs no extra
    assert cells["mlp:digits"].status == "unsupported"
    assert "pip install 'bigtrain[converge]'" in cells["mlp:digits"].reason
    assert cells["mlp:small"].status == "unsupported"
    assert "mlp:small has no converge task" in cells["mlp:small"].reason


def test_every_task_model_is_a_registered_model_shaped_for_its_data() -> None:
    from bigtrain.workloads import resolve_model

    for name in tasks.TASKS.names():
        task = tasks.task_for(name)
        if task.unavailable_reason():
            continue
        split = task.load()
        ref = resolve_model(name)
        workload = ref.family.build(ref.size.name, batch_size=4)
        output = workload.model(split.train_inputs[:4])
        loss = workload.loss_fn(output, split.train_targets[:4])
        assert torch.isfinite(loss), name


# -- the lr axis -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "canonical"), [
    ("default", "default"), ("0.001", "0.001"), ("1e-3", "0.001"), (0.001, "0.001"), (3, "3.0")])
def test_lr_values_have_one_spelling(raw: object, canonical: str) -> None:
    assert AXIS_BY_NAME["lr"].parse(raw, "--lr") == canonical


@pytest.mark.parametrize("bad", ["fast", "0", "-1", "nan", "inf", True])
def test_a_bad_lr_names_the_value(bad: object) -> None:
    with pytest.raises(BadInput, match="--lr: learning rate"):
        AXIS_BY_NAME["lr"].parse(bad, "--lr")


def test_the_default_lr_leaves_cell_ids_and_labels_as_they_were() -> None:
    axes = {"model": "mlp:seed", "optimizer": "sgd", "impl": "foreach", "batch_norm": "n/a",
            "precision": "fp32", "device": "cpu", "batch_size": 64, "compile": "off",
            "cuda_graphs": "off"}
    assert cell_id_for({**axes, "lr": "default"}) == cell_id_for(axes)
    assert cell_id_for({**axes, "lr": "0.1"}) != cell_id_for(axes)
    assert value_label("lr", "default") == "" and value_label("lr", "0.1") == "lr 0.1"
    spec = spec_from_preset("ci", {"lr": "default,0.1"})
    cells = expand(spec, CPU)
    assert len(cells) == 2 * len(expand(spec_from_preset("ci"), CPU))
    assert any(c.label.endswith("lr 0.1") for c in cells)


def test_an_lr_grid_survives_the_manifest_round_trip() -> None:
    spec = spec_from_preset("converge-quick", {"lr": "default,0.03"})
    assert spec_from_json(spec.to_json()) == spec
    step_time = spec_from_preset("quick")
    assert spec_from_json(step_time.to_json()) == step_time
