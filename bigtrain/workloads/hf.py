"""`hf:` Hugging Face Transformers models, built from their configs (no hub access, no weights).

A size names the library's `model_type` (gpt2, bert, llama, t5, vit), the task head it trains
(causal LM, masked LM, sequence-to-sequence LM, image classification) and the config fields that
differ from that config class's defaults; the model is `AutoModelFor<task>.from_config(config)`,
exactly what a user's training script builds. Every architecture has a `-tiny` twin (the same
classes, two narrow layers, a 1024-token vocabulary) so CPU tests run it in seconds.

The model computes its own loss from `labels` (the Workload has `loss_fn=None`). Synthetic data
from a fixed seed: random token ids (causal LM labels are the inputs; the model shifts them),
15% of positions masked for BERT (labels -100 elsewhere), a shorter random target for T5, random
images and labels for ViT. Items are tokens (T5: encoder plus decoder tokens) or images.

The attention implementation is requested per size (`sdpa`, else the library's `eager` where the
architecture has no SDPA path) and the one the model actually uses is recorded in the cell's notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bigtrain.workloads import register_family, register_unavailable_family
from bigtrain.workloads.base import SizeConfig, Workload, WorkloadFamily, seeded_generator
from bigtrain.workloads.libraries import (
    import_transformers,
    library_versions,
    unavailable_reason,
)

FAMILY_NAME = "hf"
CAUSAL_LM = "causal-lm"
MASKED_LM = "masked-lm"
SEQ2SEQ_LM = "seq2seq-lm"
IMAGE_CLASSIFICATION = "image-classification"
#: task -> the transformers auto class that builds its model from a config.
AUTO_CLASSES = {
    CAUSAL_LM: "AutoModelForCausalLM",
    MASKED_LM: "AutoModelForMaskedLM",
    SEQ2SEQ_LM: "AutoModelForSeq2SeqLM",
    IMAGE_CLASSIFICATION: "AutoModelForImageClassification",
}
ATTENTION_CHOICES = ("sdpa", "eager", "flash_attention_2")
#: BERT's masking rate: the share of positions whose token is hidden and predicted.
MASK_FRACTION = 0.15
#: An ignored label (transformers' cross-entropy skips it).
IGNORE_INDEX = -100


@dataclass(frozen=True, kw_only=True)
class HFSize(SizeConfig):
    """A transformers model: `model_type` (the config's registry name), `task`, and `config`, the
    config fields that differ from the config class's defaults, as (name, value) pairs. Text
    tasks read `seq_len` tokens (and `target_len` decoder tokens for seq2seq); images are the
    config's own size. `params_published` is the parameter count of the published checkpoint with
    this shape (None for a tiny twin)."""

    model_type: str
    task: str
    config: tuple[tuple[str, Any], ...] = ()
    seq_len: int = 0
    target_len: int = 0
    attention: str = "sdpa"
    params_published: int | None = None

    def validate(self) -> None:
        self.require_choice("task", AUTO_CLASSES)
        self.require_choice("attention", ATTENTION_CHOICES)
        if not isinstance(self.model_type, str) or not self.model_type:
            raise self.invalid("model_type", "must name a transformers model type")
        pairs = tuple(tuple(pair) for pair in self.config)
        if not all(len(p) == 2 and isinstance(p[0], str) for p in pairs):
            raise self.invalid("config", "must be (field name, value) pairs")
        object.__setattr__(self, "config", pairs)  # frozen: the one normalisation allowed
        if self.task != IMAGE_CLASSIFICATION:
            self.require_positive_int("seq_len")
        if self.task == SEQ2SEQ_LM:
            self.require_positive_int("target_len")

    @property
    def item_unit(self) -> str:
        """What one item is: an image for image classification, else a token."""
        return "images" if self.task == IMAGE_CLASSIFICATION else "tokens"

    def config_fields(self) -> dict[str, Any]:
        """The config overrides as keyword arguments."""
        return dict(self.config)

    def hyperparameters(self) -> dict[str, Any]:
        """What a listing shows: type, task, sequence lengths, attention and config overrides."""
        shown: dict[str, Any] = {"model_type": self.model_type, "task": self.task}
        if self.seq_len:
            shown["seq_len"] = self.seq_len
        if self.target_len:
            shown["target_len"] = self.target_len
        shown["attention"] = self.attention
        return {**shown, **self.config_fields()}


def _size(name: str, model_type: str, task: str, batch: int, note: str, *,
          config: Mapping[str, Any] = {}, seq_len: int = 0, target_len: int = 0,  # noqa: B006
          params: int | None = None) -> HFSize:
    # Each architecture's tiny twin has its real layers at a smaller width: probed in its place.
    stand_in = "" if name.endswith("-tiny") else f"{model_type}-tiny"
    return HFSize(name=name, probe_as=stand_in, default_batch_size=batch, model_type=model_type, task=task,
                  config=tuple(config.items()), seq_len=seq_len, target_len=target_len,
                  params_published=params, description=note)


#: The tiny twins' vocabulary: small enough that the embedding does not dominate a CPU step.
_TINY_TEXT = {"vocab_size": 1024}
#: T5 starts decoding from its pad token (0), as the published checkpoints' configs say; the
#: config class has no default, and the model needs it to shift `labels` into decoder inputs.
_T5_DECODER_START = {"decoder_start_token_id": 0}
SIZES: dict[str, HFSize] = {s.name: s for s in (
    _size("gpt2", "gpt2", CAUSAL_LM, 16, "GPT-2 (124M), 1024-token context", seq_len=1024,
          params=124_439_808),
    _size("gpt2-medium", "gpt2", CAUSAL_LM, 8, "GPT-2 medium (355M), 1024-token context",
          config={"n_embd": 1024, "n_layer": 24, "n_head": 16}, seq_len=1024,
          params=354_823_168),
    _size("gpt2-tiny", "gpt2", CAUSAL_LM, 4, "GPT-2 architecture, 2 layers of width 64 (CPU tests)",
          config={**_TINY_TEXT, "n_embd": 64, "n_layer": 2, "n_head": 2, "n_positions": 64,
                  "bos_token_id": 1023, "eos_token_id": 1023},
          seq_len=64),
    _size("bert-base", "bert", MASKED_LM, 16, "BERT base (110M) masked LM, 512 tokens",
          seq_len=512, params=109_514_298),
    _size("bert-tiny", "bert", MASKED_LM, 4, "BERT masked LM, 2 layers of width 64 (CPU tests)",
          config={**_TINY_TEXT, "hidden_size": 64, "num_hidden_layers": 2,
                  "num_attention_heads": 2, "intermediate_size": 128,
                  "max_position_embeddings": 64}, seq_len=64),
    _size("llama-1b", "llama", CAUSAL_LM, 4,
          "Llama 3.2 1B shapes (1.24B; GQA 32/8 heads, tied embeddings), 2048 tokens",
          config={"vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
                  "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
                  "head_dim": 64, "max_position_embeddings": 131072, "rope_theta": 500000.0,
                  "tie_word_embeddings": True},
          seq_len=2048, params=1_235_814_400),
    _size("llama-160m", "llama", CAUSAL_LM, 8,
          "Llama architecture, 12 layers of width 768 (162.4M), 1024 tokens",
          config={"vocab_size": 32000, "hidden_size": 768, "intermediate_size": 3072,
                  "num_hidden_layers": 12, "num_attention_heads": 12,
                  "num_key_value_heads": 12, "max_position_embeddings": 2048,
                  "tie_word_embeddings": False},
          seq_len=1024),
    _size("llama-tiny", "llama", CAUSAL_LM, 4,
          "Llama architecture (GQA), 2 layers of width 64 (CPU tests)",
          config={**_TINY_TEXT, "hidden_size": 64, "intermediate_size": 128,
                  "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                  "max_position_embeddings": 64}, seq_len=64),
    _size("t5-small", "t5", SEQ2SEQ_LM, 32, "T5 small (60M), 512 input and 128 target tokens",
          config=_T5_DECODER_START, seq_len=512, target_len=128, params=60_506_624),
    _size("t5-tiny", "t5", SEQ2SEQ_LM, 4, "T5 architecture, 2+2 layers of width 64 (CPU tests)",
          config={**_TINY_TEXT, **_T5_DECODER_START, "d_model": 64, "d_ff": 128, "d_kv": 32,
                  "num_layers": 2, "num_heads": 2}, seq_len=64, target_len=16),
    _size("vit-base", "vit", IMAGE_CLASSIFICATION, 128,
          "ViT-Base/16 (86.6M), 224 px, 1000 classes", config={"num_labels": 1000},
          params=86_567_656),
    _size("vit-tiny", "vit", IMAGE_CLASSIFICATION, 4,
          "ViT architecture, 2 layers of width 64, 32 px, 10 classes (CPU tests)",
          config={"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "intermediate_size": 128, "image_size": 32, "patch_size": 8,
                  "num_labels": 10}),
)}


def build_config(config: HFSize) -> Any:
    """The transformers config object of `config` (the library's defaults plus its overrides)."""
    transformers = import_transformers()
    return transformers.AutoConfig.for_model(config.model_type, **config.config_fields())


def build_model(config: HFSize) -> tuple[nn.Module, dict[str, Any]]:
    """The randomly initialised model of `config` and notes on how it was built (the attention
    implementation asked for and the one in use, with the reason when they differ)."""
    transformers = import_transformers()
    auto_class = getattr(transformers, AUTO_CLASSES[config.task])
    model_config = build_config(config)
    notes: dict[str, Any] = {"attention_requested": config.attention}
    try:
        model = auto_class.from_config(model_config, attn_implementation=config.attention)
    except (ValueError, ImportError) as exc:  # no such path for this architecture (or package)
        if config.attention == "eager":
            raise
        notes["attention_fallback_reason"] = str(exc).strip().splitlines()[0][:300]
        model = auto_class.from_config(build_config(config), attn_implementation="eager")
    notes["attention_implementation"] = str(
        getattr(model.config, "_attn_implementation", None) or "unknown")
    return model, notes


def synthetic_inputs(config: HFSize, model_config: Any, batch_size: int,
                     seed: int) -> tuple[dict[str, torch.Tensor], int, str]:
    """The model's keyword inputs (with `labels`, so it computes its loss), items per step and
    the item unit, from a fixed seed."""
    generator = seeded_generator(seed)
    if config.task == IMAGE_CLASSIFICATION:
        px = model_config.image_size
        pixels = torch.randn(batch_size, model_config.num_channels, px, px, generator=generator)
        labels = torch.randint(0, model_config.num_labels, (batch_size,), generator=generator)
        return {"pixel_values": pixels, "labels": labels}, batch_size, config.item_unit
    vocab = model_config.vocab_size
    tokens = torch.randint(0, vocab, (batch_size, config.seq_len), generator=generator)
    if config.task == CAUSAL_LM:  # the model shifts labels by one itself
        return {"input_ids": tokens, "labels": tokens.clone()}, tokens.numel(), config.item_unit
    if config.task == MASKED_LM:
        masked = torch.rand(tokens.shape, generator=generator) < MASK_FRACTION
        masked[0, 0] = True  # at least one predicted position, whatever the draw
        labels = torch.where(masked, tokens, torch.full_like(tokens, IGNORE_INDEX))
        # A reserved id stands in for [MASK]: synthetic data has no tokenizer.
        inputs = torch.where(masked, torch.full_like(tokens, vocab - 1), tokens)
        return {"input_ids": inputs, "labels": labels}, tokens.numel(), config.item_unit
    targets = torch.randint(0, vocab, (batch_size, config.target_len), generator=generator)
    items = tokens.numel() + targets.numel()  # T5 reads the input and writes the target
    return {"input_ids": tokens, "labels": targets}, items, config.item_unit


def _build(config: HFSize, *, batch_size: int, batch_norm: bool, device: torch.device,
           seed: int) -> Workload:
    model, notes = build_model(config)
    inputs, items, unit = synthetic_inputs(config, model.config, batch_size, seed)
    notes["library_versions"] = library_versions("transformers", "torchvision")
    return Workload(model=model, inputs=inputs, loss_fn=None, items_per_step=items,
                    item_unit=unit, notes=notes).to(device)


FAMILY = WorkloadFamily(
    name=FAMILY_NAME,
    sizes=SIZES,
    default_size="gpt2-tiny",
    item_unit="tokens or images",
    build_fn=_build,
    size_type=HFSize,
    description="Hugging Face Transformers models from configs (no hub, no weights)",
)


def register() -> None:
    """The `bigtrain.workloads` entry point: the family, or why it is unavailable here."""
    reason = unavailable_reason("transformers")
    if reason:
        register_unavailable_family(FAMILY_NAME, reason, replace=True)
    else:
        register_family(FAMILY, replace=True)
