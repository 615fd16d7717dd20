"""Recurrent language models: embedding -> LSTM or GRU -> linear over the vocabulary."""

from __future__ import annotations

import torch
from torch import nn

from bigtrain.workloads.base import SizeConfig, Workload, WorkloadFamily, language_model_workload


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


def _build(config: SizeConfig, *, batch_size: int, batch_norm: bool, device, seed: int) -> Workload:
    p = config.params
    return language_model_workload(RecurrentLM(dict(p)), vocab=p["vocab"], seq=p["seq"],
                                   batch_size=batch_size, device=device, seed=seed)


FAMILY = WorkloadFamily(
    name="rnn",
    sizes=SIZES,
    default_size="lstm-tiny",
    item_unit="tokens",
    build_fn=_build,
    description="LSTM/GRU language models (no batch-norm slots)",
)
