"""Recurrent language models: embedding -> LSTM or GRU -> linear over the vocabulary."""

from __future__ import annotations

import torch
from torch import nn

from bigtrain.workloads.base import SizeConfig, Workload, WorkloadFamily, seeded_generator


def _size(name: str, cell: str, vocab: int, embed: int, hidden: int, layers: int, seq: int,
          batch: int) -> SizeConfig:
    return SizeConfig(
        name=name,
        default_batch_size=batch,
        params={"cell": cell, "vocab": vocab, "embed": embed, "hidden": hidden,
                "layers": layers, "seq": seq},
        description=f"{cell.upper()} LM: vocab {vocab}, {layers}x{hidden} hidden, {seq} tokens",
    )


SIZES = {
    s.name: s
    for s in (
        _size("lstm-tiny", "lstm", 1000, 64, 128, 1, 32, 16),
        _size("lstm-small", "lstm", 10000, 256, 512, 2, 64, 32),
        _size("gru-small", "gru", 10000, 256, 512, 2, 64, 32),
        _size("lstm-medium", "lstm", 32000, 512, 1024, 2, 128, 64),
    )
}


class RecurrentLM(nn.Module):
    def __init__(self, p: dict) -> None:
        super().__init__()
        recurrent = nn.LSTM if p["cell"] == "lstm" else nn.GRU
        self.embed = nn.Embedding(p["vocab"], p["embed"])
        self.recurrent = recurrent(p["embed"], p["hidden"], num_layers=p["layers"], batch_first=True)
        self.head = nn.Linear(p["hidden"], p["vocab"])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.recurrent(self.embed(tokens))
        return self.head(hidden)


def _lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _build(config: SizeConfig, *, batch_size: int, batch_norm: bool, device, seed: int) -> Workload:
    p = config.params
    generator = seeded_generator(seed)
    stream = torch.randint(0, p["vocab"], (batch_size, p["seq"] + 1), generator=generator)
    return Workload(
        model=RecurrentLM(dict(p)).to(device),
        inputs=stream[:, :-1].contiguous().to(device),
        targets=stream[:, 1:].contiguous().to(device),
        loss_fn=_lm_loss,
        items_per_step=batch_size * p["seq"],
        item_unit="tokens",
    )


FAMILY = WorkloadFamily(
    name="rnn",
    sizes=SIZES,
    default_size="lstm-tiny",
    item_unit="tokens",
    build_fn=_build,
    description="LSTM/GRU language models (no batch-norm slots)",
)
