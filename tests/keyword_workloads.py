"""A test-only family shaped like a Hugging Face model: keyword inputs, a model-computed loss.

Registered through BIGTRAIN_PLUGINS=keyword_workloads (or by importing this module). The model
takes `input_ids`, `attention_mask`, `pixel_values` (4-D, so channels_last applies to it only) and
`labels`, and returns its loss in one of the three shapes the contract accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bigtrain.workloads import register_family
from bigtrain.workloads.base import SizeConfig, Workload, WorkloadFamily, seeded_generator

RETURNS = ("attribute", "mapping", "scalar")


@dataclass(frozen=True, kw_only=True)
class KeywordSize(SizeConfig):
    """A tiny tagger: `vocab` tokens, `width` features, `seq_len` tokens and a `image_px` image."""

    vocab: int
    width: int
    seq_len: int
    image_px: int
    returns: str

    def validate(self) -> None:
        for name in ("vocab", "width", "seq_len", "image_px"):
            self.require_positive_int(name)
        self.require_choice("returns", RETURNS)


@dataclass
class TaggerOutput:
    """Like a Hugging Face ModelOutput: the loss as an attribute beside the logits."""

    loss: torch.Tensor
    logits: torch.Tensor


class Tagger(nn.Module):
    """Tags every token from its embedding plus a pooled image feature; computes its own loss."""

    def __init__(self, config: KeywordSize) -> None:
        super().__init__()
        self.returns = config.returns
        self.embed = nn.Embedding(config.vocab, config.width)
        self.image = nn.Conv2d(3, config.width, 3, padding=1)
        self.head = nn.Linear(config.width, config.vocab)

    def forward(self, *, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                pixel_values: torch.Tensor, labels: torch.Tensor) -> Any:
        image = self.image(pixel_values).mean(dim=(2, 3))  # (batch, width)
        logits = self.head(self.embed(input_ids) + image[:, None, :])
        per_token = nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        loss = (per_token * attention_mask).sum() / attention_mask.sum()
        if self.returns == "scalar":
            return loss
        if self.returns == "mapping":
            return {"loss": loss, "logits": logits}
        return TaggerOutput(loss=loss, logits=logits)


SIZES: Mapping[str, KeywordSize] = {
    returns: KeywordSize(name=returns, default_batch_size=4, vocab=32, width=8, seq_len=6,
                         image_px=8, returns=returns, description=f"loss returned as {returns}")
    for returns in RETURNS
}


def _build(config: KeywordSize, *, batch_size: int, batch_norm: bool, device,
           seed: int) -> Workload:
    generator = seeded_generator(seed)
    input_ids = torch.randint(0, config.vocab, (batch_size, config.seq_len), generator=generator)
    attention_mask = torch.ones(batch_size, config.seq_len)
    attention_mask[:, -1] = 0  # a padded last position: the mask must travel with the inputs
    pixel_values = torch.randn(batch_size, 3, config.image_px, config.image_px, generator=generator)
    labels = torch.randint(0, config.vocab, (batch_size, config.seq_len), generator=generator)
    workload = Workload(
        model=Tagger(config),
        inputs={"input_ids": input_ids, "attention_mask": attention_mask,
                "pixel_values": pixel_values, "labels": labels},
        items_per_step=batch_size * config.seq_len,
        item_unit="tokens",
    )
    return workload.to(device, channels_last=device.type == "cuda")


FAMILY = WorkloadFamily(
    name="kw",
    sizes=SIZES,
    default_size="attribute",
    item_unit="tokens",
    build_fn=_build,
    size_type=KeywordSize,
    description="test-only keyword-input family with a model-computed loss",
)

register_family(FAMILY, replace=True)
