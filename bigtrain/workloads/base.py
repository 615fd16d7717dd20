"""What a workload is: a model family with named sizes, synthetic data, a loss and an item unit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True, kw_only=True)
class SizeConfig:
    """One named size of a family: its hyper-parameters and default batch size."""

    name: str
    default_batch_size: int
    params: Mapping[str, Any] = field(default_factory=dict)
    has_batch_norm: bool = False
    description: str = ""


@dataclass
class Workload:
    """A built workload: model and one fixed synthetic batch on the target device.

    The batch is made once from a fixed seed and reused every step, so the benchmark measures the
    training step rather than data loading.
    """

    model: nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    items_per_step: int
    item_unit: str

    def forward_loss(self) -> torch.Tensor:
        """Forward pass and loss on the fixed batch."""
        return self.loss_fn(self.model(self.inputs), self.targets)


BuildFn = Callable[..., Workload]


@dataclass(frozen=True, kw_only=True)
class WorkloadFamily:
    """A model family: `build(size, batch_size=, batch_norm=, device=, seed=)` makes a Workload."""

    name: str
    sizes: Mapping[str, SizeConfig]
    default_size: str
    item_unit: str
    build_fn: BuildFn
    description: str = ""

    def __post_init__(self) -> None:
        if self.default_size not in self.sizes:
            raise ValueError(f"family {self.name}: default size {self.default_size!r} not in sizes")

    def build(
        self,
        size: str,
        *,
        batch_size: int | None = None,
        batch_norm: bool = False,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> Workload:
        """Build the model and its synthetic batch, deterministic for a given seed."""
        config = self.sizes[size]
        generator_device = torch.device(device)
        torch.manual_seed(seed)
        return self.build_fn(
            config,
            batch_size=batch_size or config.default_batch_size,
            batch_norm=batch_norm and config.has_batch_norm,
            device=generator_device,
            seed=seed,
        )


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator; data is made on the CPU then moved, so it is identical on every device."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of every position's prediction of the next token."""
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def language_model_workload(
    model: nn.Module, *, vocab: int, seq: int, batch_size: int, device: torch.device, seed: int
) -> Workload:
    """A next-token workload: one random token stream, inputs and targets shifted by one."""
    stream = torch.randint(0, vocab, (batch_size, seq + 1), generator=seeded_generator(seed))
    return Workload(
        model=model.to(device),
        inputs=stream[:, :-1].contiguous().to(device),
        targets=stream[:, 1:].contiguous().to(device),
        loss_fn=next_token_loss,
        items_per_step=batch_size * seq,
        item_unit="tokens",
    )


def norm_or_identity(kind: type[nn.Module], channels: int, enabled: bool) -> nn.Module:
    """A batch-norm slot: the norm when enabled, identity when switched off."""
    return kind(channels) if enabled else nn.Identity()
