"""FLOPs of one training step, counted with torch.utils.flop_counter.FlopCounterMode.

What is counted is what FlopCounterMode has formulas for: matrix multiplies (mm, addmm, bmm,
baddbmm), convolutions and their backward, and the fused attention kernels, at 2 FLOPs per
multiply-add. Element-wise work (activations, norms, softmax, the optimizer's update) is not counted:
that is the usual convention for MFU, where the peak is the tensor-core matmul rate.

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


def count_flops(step_fn: Callable[[], object]) -> int | None:
    """FLOPs of one call of `step_fn` (a whole training step); None, logged, if counting fails."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False, custom_mapping=_extra_formulas())
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
