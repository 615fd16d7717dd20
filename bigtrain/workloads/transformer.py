"""GPT-style decoder-only transformers: pre-norm blocks with causal scaled-dot-product attention."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bigtrain.workloads.base import SizeConfig, Workload, WorkloadFamily, language_model_workload


@dataclass(frozen=True, kw_only=True)
class TransformerSize(SizeConfig):
    """A GPT-style decoder: `layers` pre-norm blocks of width `width` with `heads` attention heads
    (`width` divisible by `heads`), a `vocab`-token embedding tied to the head, trained on
    `seq_len`-token sequences (also the number of learned positions)."""

    vocab: int
    width: int
    layers: int
    heads: int
    seq_len: int

    def validate(self) -> None:
        for name in ("vocab", "width", "layers", "heads", "seq_len"):
            self.require_positive_int(name)
        if self.width % self.heads:
            raise self.invalid("heads", f"must divide width {self.width}")


def _size(name: str, vocab: int, width: int, layers: int, heads: int, seq_len: int, batch: int,
          note: str = "", probe_as: str = "tiny") -> TransformerSize:
    return TransformerSize(
        name=name, probe_as="" if name == probe_as else probe_as,
        default_batch_size=batch,
        vocab=vocab, width=width, layers=layers, heads=heads, seq_len=seq_len,
        description=note or f"{layers} layers, width {width}, {heads} heads, {seq_len} tokens",
    )


SIZES = {
    s.name: s
    for s in (
        _size("tiny", 1024, 64, 2, 2, 64, 8),
        _size("small", 8192, 256, 4, 4, 128, 16),
        _size("gpt2-small", 50257, 768, 12, 12, 1024, 16, "GPT-2 small shapes (124M parameters)"),
        _size("gpt2-medium", 50257, 1024, 24, 16, 1024, 8, "GPT-2 medium shapes (350M parameters)"),
        # Shaped for the converge task's delayed copy (bigtrain.data.tasks).
        _size("copy", 16, 64, 2, 2, 16, 32, "2 layers, width 64, 16 tokens (delayed copy; converge task)"),
    )
}


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, seq, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        out = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out.transpose(1, 2).reshape(batch, seq, width))


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _gpt2_init(module: nn.Module) -> None:
    # GPT-2's N(0, 0.02) init; torch's default N(0, 1) embeddings make tied logits blow up.
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class GPT(nn.Module):
    def __init__(self, config: TransformerSize) -> None:
        super().__init__()
        width = config.width
        self.token_embed = nn.Embedding(config.vocab, width)
        self.position_embed = nn.Embedding(config.seq_len, width)
        self.blocks = nn.Sequential(*(Block(width, config.heads) for _ in range(config.layers)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, config.vocab, bias=False)
        self.head.weight = self.token_embed.weight  # tied, as in GPT-2: 124M parameters, not 163M
        self.apply(_gpt2_init)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token_embed(tokens) + self.position_embed(positions)
        return self.head(self.norm(self.blocks(x)))


def _build(config: TransformerSize, *, batch_size: int, batch_norm: bool, device,
           seed: int) -> Workload:
    return language_model_workload(GPT(config), vocab=config.vocab, seq=config.seq_len,
                                   batch_size=batch_size, device=device, seed=seed)


FAMILY = WorkloadFamily(
    name="transformer",
    sizes=SIZES,
    default_size="tiny",
    item_unit="tokens",
    build_fn=_build,
    size_type=TransformerSize,
    description="GPT-style decoders (pre-norm, causal SDPA, tied embeddings; no batch-norm slots)",
)
