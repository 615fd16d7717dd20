"""Multi-layer perceptrons: the textbook seed net and deeper classifiers with BatchNorm1d slots."""

from __future__ import annotations

import torch
from torch import nn

from bigtrain.workloads.base import (
    SizeConfig,
    Workload,
    WorkloadFamily,
    norm_or_identity,
    seeded_generator,
)

SIZES = {
    "seed": SizeConfig(
        name="seed",
        default_batch_size=64,
        params={"in": 10, "hidden": [20], "out": 1, "task": "regression"},
        description="10 -> 20 -> 1 ReLU regression net, MSE loss",
    ),
    "small": SizeConfig(
        name="small",
        default_batch_size=128,
        params={"in": 784, "hidden": [512, 512], "out": 10, "task": "classification"},
        has_batch_norm=True,
        description="784 -> 512 -> 512 -> 10 classifier",
    ),
    "medium": SizeConfig(
        name="medium",
        default_batch_size=256,
        params={"in": 1024, "hidden": [2048] * 3, "out": 100, "task": "classification"},
        has_batch_norm=True,
        description="1024 -> 3x2048 -> 100 classifier",
    ),
    "large": SizeConfig(
        name="large",
        default_batch_size=512,
        params={"in": 4096, "hidden": [8192] * 4, "out": 1000, "task": "classification"},
        has_batch_norm=True,
        description="4096 -> 4x8192 -> 1000 classifier",
    ),
}


def _build(config: SizeConfig, *, batch_size: int, batch_norm: bool, device, seed: int) -> Workload:
    p = config.params
    layers: list[nn.Module] = []
    width = p["in"]
    for hidden in p["hidden"]:
        # With its norm switched on the linear bias is redundant, as in the usual recipes.
        layers += [
            nn.Linear(width, hidden, bias=not batch_norm),
            norm_or_identity(nn.BatchNorm1d, hidden, batch_norm),
            nn.ReLU(),
        ]
        width = hidden
    layers.append(nn.Linear(width, p["out"]))
    model = nn.Sequential(*layers).to(device)
    generator = seeded_generator(seed)
    inputs = torch.randn(batch_size, p["in"], generator=generator)
    if p["task"] == "regression":
        true_weights = torch.randn(p["in"], p["out"], generator=generator)
        targets = inputs @ true_weights + 0.1 * torch.randn(batch_size, p["out"], generator=generator)
        loss_fn = nn.functional.mse_loss
    else:
        targets = torch.randint(0, p["out"], (batch_size,), generator=generator)
        loss_fn = nn.functional.cross_entropy
    return Workload(
        model=model,
        inputs=inputs.to(device),
        targets=targets.to(device),
        loss_fn=loss_fn,
        items_per_step=batch_size,
        item_unit="samples",
    )


FAMILY = WorkloadFamily(
    name="mlp",
    sizes=SIZES,
    default_size="seed",
    item_unit="samples",
    build_fn=_build,
    description="fully connected nets; sizes above seed have BatchNorm1d slots",
)
