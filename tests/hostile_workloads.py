"""Test-only workloads whose errors carry hostile text, registered through
BIGTRAIN_PLUGINS=hostile_workloads: rich markup, an ANSI escape, and torch's real OOM wording."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bigtrain.workloads import register_family
from bigtrain.workloads.base import SizeConfig, Workload, WorkloadFamily, seeded_generator

#: What each size raises in its forward pass, by size name.
MESSAGES = {
    "markup": "closing tag [/x] and [bold]loud[/bold] and \x1b[31mred\x1b[0m :smile:",
    # The text torch's CPU allocator raises, bracket and all; "can't allocate memory" makes it oom.
    "oom": "[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate "
           "memory: you tried to allocate 1099511627776 bytes. Error code 12",
}


class _Raises(nn.Module):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message
        self.linear = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(self.message)


@dataclass(frozen=True, kw_only=True)
class HostileSize(SizeConfig):
    """A size of the hostile family: which message its forward raises."""

    message_key: str

    def validate(self) -> None:
        self.require_choice("message_key", tuple(MESSAGES))


def _build(config: HostileSize, *, batch_size: int, batch_norm: bool, device, seed: int) -> Workload:
    generator = seeded_generator(seed)
    model = _Raises(MESSAGES[config.message_key])
    inputs = torch.randn(batch_size, 4, generator=generator)
    targets = torch.randn(batch_size, 1, generator=generator)
    return Workload(model=model.to(device), inputs=inputs.to(device), targets=targets.to(device),
                    loss_fn=nn.functional.mse_loss, items_per_step=batch_size,
                    item_unit="samples")


register_family(
    WorkloadFamily(
        name="hostile",
        sizes={key: HostileSize(name=key, default_batch_size=8, message_key=key) for key in MESSAGES},
        default_size="markup",
        item_unit="samples",
        build_fn=_build,
        size_type=HostileSize,
        description="test-only errors carrying markup and escapes",
    ),
    replace=True,
)
