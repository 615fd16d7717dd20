"""Every family x optimizer x implementation x CPU precision trains: the loss moves and falls."""

from __future__ import annotations

import math

import pytest
import torch

from bigtrain.measure.step_loop import TrainingStep
from bigtrain.training.optim import build_optimizer, resolve_optimizer, unsupported_reason
from bigtrain.training.precision import resolve_precision
from bigtrain.workloads import FAMILIES, resolve_model
from bigtrain.workloads.capability import ProbeKey, unsupported_reasons

CPU = torch.device("cpu")
SMALLEST = ["mlp:seed", "mlp:small", "cnn:tiny", "rnn:lstm-tiny", "transformer:tiny"]
STEPS = 8


def _train(model_name: str, optimizer: str, impl: str, precision: str, batch_norm: bool = True,
           steps: int = STEPS) -> list[float]:
    ref = resolve_model(model_name)
    workload = ref.family.build(ref.size.name, batch_size=4 if ref.family.name != "mlp" else None,
                                batch_norm=batch_norm, device=CPU)
    opt, opt_step = build_optimizer(resolve_optimizer(optimizer), impl, workload.model.parameters())
    step = TrainingStep(workload, opt, opt_step, resolve_precision(precision), CPU)
    return [float(step().detach().float()) for _ in range(steps)]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("impl", ["forloop", "foreach", "fused"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
@pytest.mark.parametrize("model_name", SMALLEST)
def test_training_moves_the_loss(model_name: str, optimizer: str, impl: str, precision: str) -> None:
    reason = unsupported_reason(resolve_optimizer(optimizer), impl, "cpu")
    if reason:
        # Not a skip of the test: the matrix must mark it unsupported, and building must fail.
        with pytest.raises(TypeError):
            _train(model_name, optimizer, impl, precision, steps=1)
        return
    if precision != "fp32":
        # What this CPU's torch cannot do is found by the same probe the matrix uses (those cells
        # are recorded unsupported); where the probe says so, training must really fail.
        has_bn = resolve_model(model_name).size.has_batch_norm
        if unsupported_reasons([ProbeKey(model_name, has_bn, precision)]):
            with pytest.raises(RuntimeError):
                _train(model_name, optimizer, impl, precision, steps=1)
            return
    losses = _train(model_name, optimizer, impl, precision)
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0], losses  # one fixed batch: every optimizer must overfit it


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_compiled_optimizer_step_trains(optimizer: str) -> None:
    # torch.compile costs seconds per optimizer on a CPU, so one family stands in for all.
    assert unsupported_reason(resolve_optimizer(optimizer), "compiled", "cpu") is None
    losses = _train("mlp:seed", optimizer, "compiled", "fp32", steps=4)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def test_batch_norm_switch_changes_the_model() -> None:
    ref = resolve_model("cnn:tiny")
    with_bn = ref.family.build("tiny", batch_norm=True)
    without = ref.family.build("tiny", batch_norm=False)
    count = lambda m, kind: sum(isinstance(x, kind) for x in m.modules())  # noqa: E731
    assert count(with_bn.model, torch.nn.BatchNorm2d) > 0
    assert count(without.model, torch.nn.BatchNorm2d) == 0
    convs = [m for m in without.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.bias is not None for c in convs)  # BN off: the conv bias comes back


def test_data_is_deterministic_for_a_seed() -> None:
    ref = resolve_model("transformer:tiny")
    a, b = ref.family.build("tiny", seed=3), ref.family.build("tiny", seed=3)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, ref.family.build("tiny", seed=4).inputs)


@pytest.mark.parametrize(("name", "params"), [("mlp:seed", 241), ("cnn:resnet50", 25_557_032),
                                               ("transformer:gpt2-small", 124_439_808)])
def test_reference_shapes_have_their_published_sizes(name: str, params: int) -> None:
    ref = resolve_model(name)
    model = ref.family.build(ref.size.name, batch_size=1, batch_norm=True).model
    assert sum(p.numel() for p in model.parameters()) == params


def test_item_units() -> None:
    units = {name: family.item_unit for name, family in FAMILIES}
    assert units["mlp"] == "samples" and units["cnn"] == "images"
    assert units["rnn"] == units["transformer"] == "tokens"
    tiny = resolve_model("transformer:tiny")
    workload = tiny.family.build("tiny")
    assert workload.items_per_step == workload.inputs.numel()  # tokens = batch x sequence

