"""pytest-benchmark: one full training step (forward, backward, Adam step, zero_grad) of the
smallest size of every model family, through the same TrainingStep the sweeps measure.

    .venv/bin/pytest bench/test_training_step.py --benchmark-only
"""

from __future__ import annotations

import pytest
import torch

from bigtrain.measure.step_loop import TrainingStep
from bigtrain.training.optim import build_optimizer, resolve_optimizer
from bigtrain.training.precision import resolve_precision
from bigtrain.workloads import FAMILIES

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _smallest_sizes() -> list[str]:
    # each family lists its sizes smallest first
    return [f"{name}:{next(iter(family.sizes))}" for name, family in FAMILIES]


@pytest.mark.parametrize("model_name", _smallest_sizes())
def test_training_step(benchmark, model_name):
    family_name, _, size = model_name.partition(":")
    family = FAMILIES.get(family_name)
    workload = family.build(size, device=DEVICE, seed=0)
    optimizer, step_fn = build_optimizer(resolve_optimizer("adam"), "foreach",
                                         workload.model.parameters())
    step = TrainingStep(workload, optimizer, step_fn, resolve_precision("fp32"), DEVICE)
    benchmark.group = f"training step ({DEVICE.type}, adam foreach, fp32)"
    benchmark.extra_info.update(model=model_name, items_per_step=workload.items_per_step,
                                item_unit=workload.item_unit)

    def one_step() -> None:
        step()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)

    for _ in range(3):  # allocator, autotuning and optimizer state stay out of the rounds
        one_step()
    benchmark(one_step)
