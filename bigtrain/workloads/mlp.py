"""Multi-layer perceptrons: the textbook seed net and deeper classifiers with BatchNorm1d slots."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bigtrain.workloads.base import (
    SizeConfig,
    Workload,
    WorkloadFamily,
    norm_or_identity,
    seeded_generator,
)

TASKS = ("regression", "classification")


@dataclass(frozen=True, kw_only=True)
class MLPSize(SizeConfig):
    """An MLP: `in_features` -> each of `hidden` -> `out_features`; regression (MSE) or
    classification (cross-entropy over `out_features` classes)."""

    in_features: int
    hidden: tuple[int, ...]
    out_features: int
    task: str = "classification"

    def validate(self) -> None:
        self.require_positive_int("in_features")
        self.require_positive_ints("hidden")
        self.require_positive_int("out_features")
        self.require_choice("task", TASKS)


SIZES = {
    "seed": MLPSize(
        name="seed",
        default_batch_size=64,
        in_features=10, hidden=(20,), out_features=1, task="regression",
        description="10 -> 20 -> 1 ReLU regression net, MSE loss",
    ),
    "small": MLPSize(
        name="small",
        default_batch_size=128,
        in_features=784, hidden=(512, 512), out_features=10, task="classification",
        has_batch_norm=True,
        description="784 -> 512 -> 512 -> 10 classifier",
    ),
    "medium": MLPSize(
        name="medium", probe_as="small",
        default_batch_size=256,
        in_features=1024, hidden=(2048,) * 3, out_features=100, task="classification",
        has_batch_norm=True,
        description="1024 -> 3x2048 -> 100 classifier",
    ),
    "large": MLPSize(
        name="large", probe_as="small",
        default_batch_size=512,
        in_features=4096, hidden=(8192,) * 4, out_features=1000, task="classification",
        has_batch_norm=True,
        description="4096 -> 4x8192 -> 1000 classifier",
    ),
    # Shaped for the converge tasks' real data (bigtrain.data.tasks); synthetic batches in sweeps.
    "digits": MLPSize(
        name="digits",
        default_batch_size=64,
        in_features=64, hidden=(128, 128), out_features=10, task="classification",
        has_batch_norm=True,
        description="64 -> 128 -> 128 -> 10 classifier (8x8 digits; converge task)",
    ),
    "wine": MLPSize(
        name="wine",
        default_batch_size=16,
        in_features=13, hidden=(32,), out_features=3, task="classification",
        has_batch_norm=True,
        description="13 -> 32 -> 3 classifier (wine; converge task)",
    ),
    "breast-cancer": MLPSize(
        name="breast-cancer",
        default_batch_size=32,
        in_features=30, hidden=(32,), out_features=2, task="classification",
        has_batch_norm=True,
        description="30 -> 32 -> 2 classifier (breast cancer; converge task)",
    ),
}


def _build(config: MLPSize, *, batch_size: int, batch_norm: bool, device, seed: int) -> Workload:
    layers: list[nn.Module] = []
    width = config.in_features
    for hidden in config.hidden:
        # With its norm switched on the linear bias is redundant, as in the usual recipes.
        layers += [
            nn.Linear(width, hidden, bias=not batch_norm),
            norm_or_identity(nn.BatchNorm1d, hidden, batch_norm),
            nn.ReLU(),
        ]
        width = hidden
    layers.append(nn.Linear(width, config.out_features))
    model = nn.Sequential(*layers)
    generator = seeded_generator(seed)
    inputs = torch.randn(batch_size, config.in_features, generator=generator)
    if config.task == "regression":
        true_weights = torch.randn(config.in_features, config.out_features, generator=generator)
        noise = torch.randn(batch_size, config.out_features, generator=generator)
        targets = inputs @ true_weights + 0.1 * noise
        loss_fn = nn.functional.mse_loss
    else:
        targets = torch.randint(0, config.out_features, (batch_size,), generator=generator)
        loss_fn = nn.functional.cross_entropy
    return Workload(
        model=model,
        inputs=inputs,
        targets=targets,
        loss_fn=loss_fn,
        items_per_step=batch_size,
        item_unit="samples",
    ).to(device)


FAMILY = WorkloadFamily(
    name="mlp",
    sizes=SIZES,
    default_size="seed",
    item_unit="samples",
    build_fn=_build,
    size_type=MLPSize,
    description="fully connected nets; sizes above seed have BatchNorm1d slots",
)
