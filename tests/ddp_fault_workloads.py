"""Data-parallel fault injection, registered only for tests through
BIGTRAIN_PLUGINS=ddp_fault_workloads: the `ddpfault` family misbehaves in rank 1 only.

`crash-rank1` kills rank 1 with SIGKILL at its third forward pass; `hang-rank1` makes rank 1 sleep
there; rank 0 goes on until it waits for rank 1 in a collective. `healthy` never misbehaves.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import torch
from torch import nn

from bigtrain.workloads import register_family
from bigtrain.workloads.base import SizeConfig, Workload, WorkloadFamily, seeded_generator

HANG_S = 3600
MODES = ("crash-rank1", "hang-rank1", "healthy")
FAULT_AT_FORWARD = 3


class _RankFault(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.linear = nn.Linear(4, 1)
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        if os.environ.get("RANK") == "1" and self.forwards == FAULT_AT_FORWARD:
            if self.mode == "crash-rank1":
                os.kill(os.getpid(), signal.SIGKILL)
            elif self.mode == "hang-rank1":
                time.sleep(HANG_S)
        return self.linear(x)


@dataclass(frozen=True, kw_only=True)
class RankFaultSize(SizeConfig):
    """A size of the ddpfault family: which misbehaviour rank 1 shows."""

    mode: str

    def validate(self) -> None:
        self.require_choice("mode", MODES)


def _build(config: RankFaultSize, *, batch_size: int, batch_norm: bool, device,
           seed: int) -> Workload:
    generator = seeded_generator(seed)
    inputs = torch.randn(batch_size, 4, generator=generator)
    targets = torch.randn(batch_size, 1, generator=generator)
    return Workload(model=_RankFault(config.mode).to(device), inputs=inputs.to(device),
                    targets=targets.to(device), loss_fn=nn.functional.mse_loss,
                    items_per_step=batch_size, item_unit="samples")


register_family(
    WorkloadFamily(
        name="ddpfault",
        sizes={m: RankFaultSize(name=m, default_batch_size=8, mode=m) for m in MODES},
        default_size="healthy",
        item_unit="samples",
        build_fn=_build,
        size_type=RankFaultSize,
        description="test-only data-parallel fault injection",
    ),
    replace=True,
)
