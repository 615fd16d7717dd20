"""Memory anatomy of a cell: parameters, gradients, optimizer state (by dtype) and activations.

Read once, after the timed window, from the built cell itself:

- parameters: the bytes of the model's distinct parameter tensors (a tied weight counted once);
- gradients: what backward allocates, one tensor per trainable parameter in its dtype (read from
  the parameters, as `zero_grad(set_to_none=True)` has freed the last step's gradients);
- optimizer state: every tensor the optimizer keeps in `optimizer.state`, nested containers and
  tensor subclasses (torchao's 8-bit state: codes + block scales) opened down to the plain tensors
  that hold memory, each storage counted once, summed by dtype;
- activations, estimated two ways (`activation_method` says which):
  on CUDA, the cell's peak allocated memory minus parameters, gradients and optimizer state (what
  else the step held at its peak: activations, and the allocator's workspace);
  on the CPU, where the process's RSS holds the interpreter and libraries too, the bytes of the
  tensors autograd saves for backward in one forward pass of one micro-batch (counted by
  `torch.autograd.graph.saved_tensors_hooks`, each storage once, parameters and the batch left
  out); not on the CPU ranks of a data-parallel cell, where an extra forward would start
  collectives no backward finishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

#: `activation_method` values.
PEAK_MINUS_REST = "cuda peak allocated - parameters - gradients - optimizer state"
SAVED_FOR_BACKWARD = "tensors saved for backward in one forward of one micro-batch (cpu)"


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded (DTensor) parameter's own shard; any other tensor as it is."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor


def plain_tensors(value: Any) -> Iterator[torch.Tensor]:
    """The plain tensors inside a state value: containers walked, tensor subclasses flattened
    (`__tensor_flatten__`) to the tensors that own memory."""
    if isinstance(value, torch.Tensor):
        value = _local(value)
        flatten = getattr(value, "__tensor_flatten__", None)
        if callable(flatten) and type(value) is not torch.Tensor and not isinstance(
                value, torch.nn.Parameter):
            names, _ = flatten()
            for name in names:
                yield from plain_tensors(getattr(value, name))
        else:
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from plain_tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from plain_tensors(item)


def _storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    return str(tensor.device), tensor.untyped_storage().data_ptr()


def _bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def optimizer_state_by_dtype(optimizer: Any) -> dict[str, int]:
    """Bytes of the optimizer's state tensors by dtype (`float32`, `uint8`, ...), each storage
    once; an empty mapping for an optimizer without state (plain SGD)."""
    seen: set[tuple[str, int]] = set()
    out: dict[str, int] = {}
    for state in getattr(optimizer, "state", {}).values():
        for tensor in plain_tensors(state):
            key = _storage_key(tensor)
            if tensor.numel() and key in seen:
                continue
            seen.add(key)
            dtype = str(tensor.dtype).removeprefix("torch.")
            out[dtype] = out.get(dtype, 0) + _bytes(tensor)
    return dict(sorted(out.items()))


def parameter_bytes(model: torch.nn.Module) -> tuple[int, int]:
    """(parameter bytes, gradient bytes) of the model's distinct parameters."""
    params = [_local(p) for p in model.parameters()]  # parameters() yields a tied weight once
    return sum(_bytes(p) for p in params), sum(_bytes(p) for p in params if p.requires_grad)


def saved_activation_bytes(step: Any) -> int | None:
    """Bytes autograd saves for backward in one forward of one micro-batch of `step` (a
    `TrainingStep`), parameters and the batch itself left out; None when the step cannot be run
    eagerly here (a compiled model keeps its saved tensors inside the compiled graph)."""
    from bigtrain.measure.step_loop import micro_batch_slices

    workload = getattr(step, "workload", None)
    if workload is None or hasattr(workload.model, "_orig_mod"):
        return None
    exclude = {_storage_key(_local(p)) for p in workload.model.parameters()}
    whole = (workload.inputs, workload.targets)
    batch = list(whole[0].values()) if isinstance(whole[0], dict) else [whole[0]]
    exclude |= {_storage_key(t) for t in batch if isinstance(t, torch.Tensor)}
    micro = getattr(step, "micro_batches", 1)
    seen: dict[tuple[str, int], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.device.type != "meta":
            key = _storage_key(tensor)
            if key not in exclude:
                seen[key] = tensor.untyped_storage().nbytes()
        return tensor

    try:
        if micro > 1:
            workload.inputs, workload.targets = micro_batch_slices(workload, micro)[0]
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
                step.autocast():
            loss = workload.forward_loss()
        del loss  # the graph and its saved tensors go with it; no backward, no gradients
    finally:
        workload.inputs, workload.targets = whole
    return sum(seen.values())


def memory_anatomy(built: Any, peak_allocated_bytes: int | None) -> dict[str, Any]:
    """The record fields of the cell's memory anatomy (see the module docstring), plus Muon's
    parameter split where the optimizer made one."""
    model = built.workload.model
    param_bytes, grad_bytes = parameter_bytes(model)
    by_dtype = optimizer_state_by_dtype(built.optimizer)
    state_bytes = sum(by_dtype.values())
    if built.device.type == "cuda" and peak_allocated_bytes is not None:
        activation: int | None = max(0, peak_allocated_bytes - param_bytes - grad_bytes
                                     - state_bytes)
        method: str | None = PEAK_MINUS_REST
    elif torch.distributed.is_available() and torch.distributed.is_initialized():
        # A data-parallel rank's extra forward would start a reduction (DDP) or gathers (FSDP)
        # that no backward finishes: left unmeasured there.
        activation, method = None, None
    else:
        step = getattr(built.step, "eager_step", built.step)
        activation = saved_activation_bytes(step)
        method = SAVED_FOR_BACKWARD if activation is not None else None
    fields: dict[str, Any] = {
        "param_bytes": param_bytes,
        "grad_bytes": grad_bytes,
        "optimizer_state_bytes": state_bytes,
        "optimizer_state_dtype_bytes": by_dtype,
        "optimizer_state_ratio": state_bytes / param_bytes if param_bytes else None,
        "activation_bytes": activation,
        "activation_method": method,
    }
    split = getattr(built.optimizer, "split", None)
    if split is not None:
        fields["muon_params"] = split.muon_params
        fields["muon_adamw_params"] = split.adamw_params
    return fields

