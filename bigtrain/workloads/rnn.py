"""Recurrent language models: embedding -> LSTM or GRU -> linear over the vocabulary."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bigtrain.workloads.base import SizeConfig, Workload, WorkloadFamily, language_model_workload


CELLS = ("lstm", "gru")


@dataclass(frozen=True, kw_only=True)
class RNNSize(SizeConfig):
    """A recurrent LM: `vocab`-token embedding of width `embed`, `layers` stacked `cell`s of
    `hidden` units, a linear head over the vocabulary; trained on `seq_len`-token sequences."""

    cell: str
    vocab: int
    embed: int
    hidden: int
    layers: int
    seq_len: int

    def validate(self) -> None:
        self.require_choice("cell", CELLS)
        for name in ("vocab", "embed", "hidden", "layers", "seq_len"):
            self.require_positive_int(name)


def _size(name: str, cell: str, vocab: int, embed: int, hidden: int, layers: int, seq_len: int,
          batch: int) -> RNNSize:
    # Every LSTM size has lstm-tiny's layers; the GRU is probed as itself (no smaller GRU).
    stand_in = "lstm-tiny" if cell == "lstm" and name != "lstm-tiny" else ""
    return RNNSize(
        name=name, probe_as=stand_in,
        default_batch_size=batch,
        cell=cell, vocab=vocab, embed=embed, hidden=hidden, layers=layers, seq_len=seq_len,
        description=f"{cell.upper()} LM: vocab {vocab}, {layers}x{hidden} hidden, {seq_len} tokens",
    )


SIZES = {
    s.name: s
    for s in (
        _size("lstm-tiny", "lstm", 1000, 64, 128, 1, 32, 16),
        _size("lstm-small", "lstm", 10000, 256, 512, 2, 64, 32),
        _size("gru-small", "gru", 10000, 256, 512, 2, 64, 32),
        _size("lstm-medium", "lstm", 32000, 512, 1024, 2, 128, 64),
        # Shaped for the converge task's delayed copy (bigtrain.data.tasks).
        _size("copy", "lstm", 16, 32, 64, 1, 16, 32),
    )
}


class RecurrentLM(nn.Module):
    def __init__(self, config: RNNSize) -> None:
        super().__init__()
        recurrent = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.embed = nn.Embedding(config.vocab, config.embed)
        self.recurrent = recurrent(config.embed, config.hidden, num_layers=config.layers,
                                   batch_first=True)
        self.head = nn.Linear(config.hidden, config.vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.recurrent(self.embed(tokens))
        return self.head(hidden)


def _build(config: RNNSize, *, batch_size: int, batch_norm: bool, device, seed: int) -> Workload:
    return language_model_workload(RecurrentLM(config), vocab=config.vocab, seq=config.seq_len,
                                   batch_size=batch_size, device=device, seed=seed)


FAMILY = WorkloadFamily(
    name="rnn",
    sizes=SIZES,
    default_size="lstm-tiny",
    item_unit="tokens",
    build_fn=_build,
    size_type=RNNSize,
    description="LSTM/GRU language models (no batch-norm slots)",
)
