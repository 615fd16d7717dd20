"""FLOPs of one training step, counted with torch.utils.flop_counter.FlopCounterMode.

What is counted is what FlopCounterMode has formulas for: matrix multiplies (mm, addmm, bmm,
baddbmm), convolutions and their backward, and the fused attention kernels, at 2 FLOPs per
multiply-add. Element-wise work (activations, norms, softmax, the optimizer's update) is not counted:
that is the usual convention for MFU, where the peak is the tensor-core matmul rate.

Two formulas torch lacks are added. On CUDA, LSTM and GRU layers run as one `aten._cudnn_rnn`
kernel, which FlopCounterMode would count as zero (only the output layer would be counted, and the
CPU and GPU counts of the same model would disagree); it is counted here as the matmuls the CPU runs
for the same layers. The CPU's oneDNN LSTM kernel (`aten.mkldnn_rnn_layer`) is uncounted by torch
too and gets the same formula, so CPU and GPU counts of an RNN agree. And torch counts causal attention as full attention; a causal kernel skips the
masked half of the score matrix, so with `causal_attention="unmasked"` (what cells use) only the
unmasked (query, key) pairs are counted. `FLOPS_CONVENTION` says this in each record.

Counting runs one real step under a dispatch mode, so it is slow and mutates the model (one more
optimizer step): call it once per cell, outside the timed window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def _extra_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas torch lacks: the CPU flash-attention kernels that F.scaled_dot_product_attention
    picks on the CPU count as 0 FLOPs otherwise. They have the same shapes as the CUDA kernels, so
    torch's own sdpa counts apply."""
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    formulas: dict[Any, Callable[..., int]] = {}
    count_fwd = getattr(flop_counter, "sdpa_flop_count", None)
    count_bwd = getattr(flop_counter, "sdpa_backward_flop_count", None)
    if count_fwd is None or count_bwd is None:
        return formulas

    def forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return count_fwd(query_shape, key_shape, value_shape)

    def backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return count_bwd(grad_out_shape, query_shape, key_shape, value_shape)

    for name, formula in (
        ("_scaled_dot_product_flash_attention_for_cpu", forward),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", backward),
    ):
        op = getattr(aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            formulas[op] = formula
    return formulas


#: What a cell's `flops_per_step` counts; recorded beside `mfu_pct` as `extra.flops_convention`.
FLOPS_CONVENTION = (
    "2 FLOPs per multiply-add of matmuls, convolutions, attention and cuDNN LSTM/GRU kernels "
    "(element-wise work not counted); causal attention counts only its unmasked query-key pairs "
    "(t(t+1)/2 of t*t for t tokens), not the full score matrix"
)
CAUSAL_ATTENTION_CHOICES = ("full", "unmasked")


def count_flops(step_fn: Callable[[], object], *, causal_attention: str = "full") -> int | None:
    """FLOPs of one call of `step_fn` (a whole training step); None, logged, if counting fails.

    `causal_attention`: "full" counts a causal attention call like an unmasked one (torch's own
    convention); "unmasked" counts only the query-key pairs a causal kernel computes.
    """
    if causal_attention not in CAUSAL_ATTENTION_CHOICES:
        raise ValueError(f"causal_attention must be one of {CAUSAL_ATTENTION_CHOICES}, "
                         f"got {causal_attention!r}")
    try:
        from torch.utils.flop_counter import FlopCounterMode

        formulas = {**_extra_formulas(), **_cudnn_rnn_formulas()}
        if causal_attention == "unmasked":
            formulas.update(_causal_attention_formulas(formulas))
        counter = FlopCounterMode(display=False, custom_mapping=formulas)
        with counter:
            step_fn()
        total = int(counter.get_total_flops())
    except Exception as exc:  # a step that cannot run under the dispatch mode (e.g. compiled)
        log.warning("FLOP counting failed, flops_per_step will be null: %s: %s", type(exc).__name__, exc)
        return None
    if total <= 0:
        log.warning("FLOP counting found no matmul/conv/attention work; flops_per_step will be null")
        return None
    return total


# -- cuDNN RNN -----------------------------------------------------------------------------------
def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    """Argument `name` of an aten call, passed at positional `index` or by keyword."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def cudnn_rnn_forward_flops(input_shape: Any, weight_shapes: Any, batch_sizes: Any) -> int:
    """FLOPs of a cuDNN RNN forward: every weight matrix multiplies one vector per time step and
    sequence (the input matrix the layer's input, the hidden matrix the previous hidden state,
    the projection matrix the hidden state), 2 FLOPs per multiply-add. Biases are element-wise."""
    if batch_sizes:  # a packed sequence: (total steps over all sequences, features)
        vectors = int(input_shape[0])
    else:  # (time, batch, features) or batch-first: either way the first two dims
        vectors = int(input_shape[0]) * int(input_shape[1])
    return sum(2 * vectors * int(w[0]) * int(w[1]) for w in weight_shapes if len(w) == 2)


def cudnn_rnn_backward_flops(input_shape: Any, weight_shapes: Any, batch_sizes: Any,
                             output_mask: Any) -> int:
    """FLOPs of a cuDNN RNN backward: the data pass (gradients through every matrix, which cuDNN
    always runs, since the weight pass needs it) is one forward's worth of matmuls, and the weight
    pass, when weight gradients are wanted, another."""
    forward = cudnn_rnn_forward_flops(input_shape, weight_shapes, batch_sizes)
    wants_weights = bool(output_mask[3]) if output_mask is not None else True
    return forward * (2 if wants_weights else 1)


def _cudnn_rnn_formulas() -> dict[Any, Callable[..., int]]:
    import torch

    aten = torch.ops.aten
    formulas: dict[Any, Callable[..., int]] = {}

    def forward(input_shape, weight_shapes, *args, out_shape=None, **kwargs) -> int:
        # args start at weight_stride0 (schema index 2); batch_sizes is schema index 14
        return cudnn_rnn_forward_flops(input_shape, weight_shapes,
                                       _arg(args, kwargs, 14 - 2, "batch_sizes", ()))

    def backward(input_shape, weight_shapes, *args, out_shape=None, **kwargs) -> int:
        # batch_sizes is schema index 18, output_mask 21
        return cudnn_rnn_backward_flops(input_shape, weight_shapes,
                                        _arg(args, kwargs, 18 - 2, "batch_sizes", ()),
                                        _arg(args, kwargs, 21 - 2, "output_mask"))

    # On the CPU, LSTM layers run as oneDNN kernels, one call per layer and direction, which
    # FlopCounterMode does not count either. weight0/weight1 are the input and hidden matrices.
    def mkldnn_forward(input_shape, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
        return cudnn_rnn_forward_flops(input_shape, [w_ih, w_hh],
                                       _arg(args, kwargs, 8 - 3, "batch_sizes", ()))

    def mkldnn_backward(input_shape, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
        # the oneDNN backward computes data and weight gradients together
        return cudnn_rnn_backward_flops(input_shape, [w_ih, w_hh],
                                        _arg(args, kwargs, 20 - 3, "batch_sizes", ()), None)

    for name, formula in (("_cudnn_rnn", forward), ("_cudnn_rnn_backward", backward),
                          ("mkldnn_rnn_layer", mkldnn_forward),
                          ("mkldnn_rnn_layer_backward", mkldnn_backward)):
        op = getattr(aten, name, None)
        if op is not None:
            formulas[op] = formula
    return formulas


# -- causal attention ----------------------------------------------------------------------------
#: Fused attention kernels: (op name, index of the query among the arguments).
_ATTENTION_OPS = (
    ("_scaled_dot_product_flash_attention", 0),
    ("_scaled_dot_product_flash_attention_for_cpu", 0),
    ("_scaled_dot_product_efficient_attention", 0),
    ("_scaled_dot_product_cudnn_attention", 0),
    ("_scaled_dot_product_flash_attention_backward", 1),
    ("_scaled_dot_product_flash_attention_for_cpu_backward", 1),
    ("_scaled_dot_product_efficient_attention_backward", 1),
    ("_scaled_dot_product_cudnn_attention_backward", 1),
)


def causal_pairs(queries: int, keys: int) -> int:
    """(query, key) pairs a causal mask keeps: query i sees keys 0..i (torch's top-left aligned
    `is_causal`)."""
    return sum(min(i + 1, keys) for i in range(queries))


def _causal_attention_formulas(extra: dict[Any, Callable[..., int]]) -> dict[Any, Callable[..., int]]:
    """Formulas that count a causal call at its share of unmasked pairs (raw-argument formulas
    wrapping torch's, or ours for the CPU kernels)."""
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    formulas: dict[Any, Callable[..., int]] = {}
    for name, query_index in _ATTENTION_OPS:
        op = getattr(aten, name, None)
        if op is None:
            continue
        if op in extra:
            full = flop_counter.shape_wrapper(extra[op])
        elif op in flop_counter.flop_registry:
            full = flop_counter.flop_registry[op]
        else:
            continue
        causal_index = next(i for i, a in enumerate(op.default._schema.arguments)
                            if a.name == "is_causal")
        formulas[op] = _causal_formula(full, query_index, causal_index)
    return formulas


def _causal_formula(full: Callable[..., int], query_index: int, causal_index: int) -> Callable[..., int]:
    def formula(*args, out_val=None, **kwargs) -> int:
        flops = full(*args, out_val=out_val, **kwargs)
        if not _arg(args, kwargs, causal_index, "is_causal", False):
            return flops
        queries = int(args[query_index].shape[-2])
        keys = int(args[query_index + 1].shape[-2])
        # every attention matmul has one (query, key) dimension pair: scale them all alike
        return flops * causal_pairs(queries, keys) // (queries * keys)

    formula._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode: pass tensors as-is
    return formula
