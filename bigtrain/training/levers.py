"""Memory levers on a built model: activation checkpointing per block and FSDP2 sharding per block.

Both act on a model's *blocks*, the repeated units that hold most activations (and parameters):

- our `transformer` GPT: each decoder block; `cnn`: each residual block; `rnn`: the recurrent
  stack (torch's LSTM/GRU runs all its layers in one call, so the whole stack is one unit);
- `tv:` torchvision models, per stage: a ResNet's `layer1..layer4`, each child of `features`
  (EfficientNet, MobileNet, ConvNeXt), each encoder layer of a VisionTransformer;
- `hf:` models: the module classes the library itself declares unsplittable
  (`_no_split_modules`: the decoder or encoder layer), which is what its own gradient
  checkpointing and accelerate's sharding use too.

Checkpointing of our and torchvision's blocks goes through `torch.utils.checkpoint` with
`use_reentrant=False`, installed on each block's own `forward` so that parameter names, state
dicts and FSDP's hooks on the module stay as they were; `hf:` models switch on their own
`activation_checkpointing_enable()` (`gradient_checkpointing_enable()` in older transformers).
Either can be paused (`set_checkpointing`): the step-time
protocol runs a short window without it after the timed window to measure what recomputation
costs in the same process, on the same model and batch.

A family without blocks here (`mlp`, a plugin's) is `unsupported` for checkpointing before any
cell runs (`checkpointing_unsupported_reason`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

#: Families whose blocks `model_blocks` knows (the built-ins, and the library families).
BLOCK_FAMILIES = ("transformer", "cnn", "rnn", "tv", "hf")
#: The attribute a checkpointed block carries (the switch that pauses it).
CHECKPOINT_ATTR = "_bigtrain_checkpoint"


def checkpointing_unsupported_reason(model_name: str) -> str | None:
    """Why `family:size` cannot have activation checkpointing here (None: it can)."""
    family = model_name.partition(":")[0]
    if family in BLOCK_FAMILIES:
        return None
    return (f"activation checkpointing wraps a model's blocks; {model_name} has none bigtrain "
            f"knows (families with blocks: {', '.join(BLOCK_FAMILIES)})")


def _is_hf(model: nn.Module) -> bool:
    return hasattr(model, "gradient_checkpointing_enable") and hasattr(model, "_no_split_modules")


def _hf_switch(model: nn.Module, enabled: bool) -> str:
    """Switch a transformers model's own checkpointing (non-reentrant); returns the method used.
    Newer transformers name it activation checkpointing and deprecate the gradient_ spelling."""
    if hasattr(model, "activation_checkpointing_enable"):
        if enabled:
            model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
        return "transformers activation_checkpointing_enable (use_reentrant=False)"
    if enabled:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()
    return "transformers gradient_checkpointing_enable (use_reentrant=False)"


def model_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's blocks (see the module docstring), outermost first; [] where none are known."""
    if _is_hf(model):
        names = set(model._no_split_modules or ())
        return [m for m in model.modules() if type(m).__name__ in names]
    blocks = getattr(model, "blocks", None)  # our transformer
    if isinstance(blocks, nn.Sequential):
        return list(blocks)
    stages = getattr(model, "stages", None)  # our cnn
    if isinstance(stages, nn.Sequential):
        return list(stages)
    if isinstance(getattr(model, "recurrent", None), nn.RNNBase):  # our rnn
        return [model.recurrent]
    if all(hasattr(model, f"layer{i}") for i in range(1, 5)):  # torchvision ResNet
        return [getattr(model, f"layer{i}") for i in range(1, 5)]
    encoder = getattr(model, "encoder", None)  # torchvision VisionTransformer
    if isinstance(getattr(encoder, "layers", None), nn.Sequential):
        return list(encoder.layers)
    features = getattr(model, "features", None)  # EfficientNet, MobileNet, ConvNeXt
    if isinstance(features, nn.Sequential):
        return list(features)
    return []


class _CheckpointedForward:
    """A block's forward run under `torch.utils.checkpoint` (non-reentrant) while `enabled`."""

    def __init__(self, forward: Callable[..., Any]) -> None:
        self.forward = forward
        self.enabled = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.enabled and torch.is_grad_enabled():
            return checkpoint(self.forward, *args, use_reentrant=False, **kwargs)
        return self.forward(*args, **kwargs)


def enable_checkpointing(model: nn.Module) -> dict[str, Any]:
    """Switch on activation checkpointing per block, in place; returns notes for the record.

    Raises ValueError where the model has no blocks (the matrix marks such cells unsupported
    first, so this is a plugin model the family table did not foresee)."""
    if _is_hf(model):
        return {"checkpointing_method": _hf_switch(model, True),
                "checkpointed_blocks": len(model_blocks(model))}
    blocks = model_blocks(model)
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no blocks to checkpoint")
    for block in blocks:
        if not isinstance(getattr(block, CHECKPOINT_ATTR, None), _CheckpointedForward):
            wrapper = _CheckpointedForward(block.forward)
            block.forward = wrapper  # the instance attribute shadows the class's forward
            setattr(block, CHECKPOINT_ATTR, wrapper)
    return {"checkpointing_method": "torch.utils.checkpoint per block (use_reentrant=False)",
            "checkpointed_blocks": len(blocks)}


def checkpointed_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks of `model` that `enable_checkpointing` wrapped (ours and torchvision's)."""
    return [m for m in model.modules()
            if isinstance(getattr(m, CHECKPOINT_ATTR, None), _CheckpointedForward)]


def set_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Pause (False) or resume (True) the checkpointing `enable_checkpointing` switched on."""
    if _is_hf(model):
        _hf_switch(model, enabled)
        return
    for block in checkpointed_blocks(model):
        getattr(block, CHECKPOINT_ATTR).enabled = enabled


@contextmanager
def checkpointing_paused(model: nn.Module) -> Iterator[None]:
    """Run the block with checkpointing paused, and switch it back on after."""
    set_checkpointing(model, False)
    try:
        yield
    finally:
        set_checkpointing(model, True)


# -- FSDP2 -----------------------------------------------------------------------------------------
#: The `parallel` axis values that shard with FSDP2.
FSDP_VALUES = ("fsdp", "fsdp-offload")


def apply_fsdp(model: nn.Module, *, offload: bool) -> dict[str, Any]:
    """Shard `model` in place with FSDP2 `fully_shard`: each block, then the root (which holds
    what is left: embeddings, heads, norms); with `offload`, parameters, gradients and optimizer
    state live in host memory (`CPUOffloadPolicy`). Call inside an initialised process group and
    before the optimizer is built (it must see the sharded parameters)."""
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    policy = CPUOffloadPolicy() if offload else OffloadPolicy()
    blocks = model_blocks(model)
    for block in blocks:
        fully_shard(block, offload_policy=policy)
    fully_shard(model, offload_policy=policy)
    return {"fsdp_units": len(blocks) + 1, "fsdp_offload": offload}
