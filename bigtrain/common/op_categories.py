"""Which category an op falls into: ONE ordered rule table, read by the capture side (it writes
the category column of each ops table) and named by the analysing side (its valid categories).

An op name is normalised first, so that the op and its autograd node read alike:
`autograd::engine::evaluate_function: NativeBatchNormBackward0` and `NativeBatchNormBackward0`
become `native_batch_norm` (the node's forward op, in ATen spelling), `aten::addmm` becomes
`addmm`. The rules then match the normalised name in order; the first match wins, `other` is what
none matched. A rule may hold only in one phase: everything the optimizer phase runs (a for-loop
Adam's `aten::mul_` as much as a fused `aten::_fused_adam_`) is optimizer work.

Pure Python (no torch): both sides of the wall import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

CATEGORIES = ("matmul/conv", "attention", "normalization", "elementwise/activation", "loss",
              "optimizer", "communication", "copy/memory", "other")
OTHER = "other"


@dataclass(frozen=True)
class Rule:
    """Ops whose normalised name matches `pattern` (in `phase` only, when given) are `category`."""

    category: str
    pattern: re.Pattern[str]
    phase: str | None = None
    why: str = ""


def _rule(category: str, pattern: str, phase: str | None = None, why: str = "") -> Rule:
    if category not in CATEGORIES:  # a bad entry is a bug in this table: say so at import
        raise ValueError(f"op category rule {pattern!r}: category {category!r}; valid: "
                         f"{', '.join(CATEGORIES)}")
    return Rule(category=category, pattern=re.compile(pattern), phase=phase, why=why)


#: The table, in match order. Communication comes first (an all-reduce in the optimizer phase is
#: still communication); then the optimizer phase as a whole; then the specific kinds of work
#: before the generic ones (`log_softmax` is loss before `softmax` is elementwise).
RULES: tuple[Rule, ...] = (
    _rule("communication",
          r"^(nccl|gloo|c10d|mpi)\b|^nccl|all_?reduce|all_?gather|reduce_?scatter|all_?to_?all|"
          r"^broadcast_?$|record_param_comms|^(send|recv|barrier)$|^distributeddataparallel\.",
          why="collectives and the DDP wrapper's own ranges"),
    _rule("optimizer", r".", phase="optimizer",
          why="the optimizer phase is optimizer work, whichever ops it dispatches"),
    _rule("optimizer", r"^_foreach_|^_fused_(adam|adamw|sgd|adagrad)|^optimizer\.|"
          r"multi_tensor_apply|fused_adam",
          why="an optimizer's kernels outside its phase (a compiled step)"),
    _rule("attention", r"attention|^sdpa|flash_|_efficient_attention|^_?cudnn_attention",
          why="scaled dot-product attention, fused or not"),
    _rule("loss", r"loss|log_softmax|^nll|cross_entropy",
          why="losses and the log-softmax of cross entropy"),
    _rule("normalization", r"batch_?norm|layer_?norm|group_?norm|instance_?norm|rms_?norm|"
          r"^_?native_norm|welford",
          why="batch, layer, group, instance and RMS norm, forward and backward"),
    _rule("matmul/conv", r"^(addmm|addmm_|mm|bmm|baddbmm|addbmm|matmul|linear|addmv|mv|dot|"
          r"einsum|_addmm_activation)$|conv|gemm|gemv|^(lstm|gru|rnn_tanh|rnn_relu)|_rnn|cutlass|"
          r"^mkldnn_(linear|matmul)|_int_mm|_scaled_mm",
          why="matrix products, convolutions and the recurrent cells built of them"),
    _rule("copy/memory", r"^(copy_|_copy_from|_copy_from_and_resize|_to_copy|to|clone|contiguous|"
          r"empty|empty_like|empty_strided|new_empty|new_empty_strided|new_zeros|zeros|zeros_like|"
          r"ones|ones_like|zero_|fill_|full|full_like|resize_|set_|detach|detach_|view|"
          r"reshape|as_strided|as_strided_|expand|expand_as|t|transpose|permute|squeeze|unsqueeze|"
          r"flatten|unflatten|slice|select|narrow|split|split_with_sizes|chunk|unbind|cat|stack|"
          r"index|index_select|index_put_|gather|scatter|scatter_add_|embedding|"
          r"embedding_dense_backward|embedding_backward|alias|lift_fresh|item|_local_scalar_dense|"
          r"numpy_t|_reshape_alias|unsafe_split|unsafe_chunk|clamp_min_|"
          r"pin_memory|record_stream|_has_compatible_shallow_copy_type|masked_fill_?|"
          r"_unsafe_index|_unsafe_index_put|repeat|tile|flip|roll|pad|constant_pad_nd|"
          r"unfold|im2col|col2im|tril|triu|arange|rand|randn|randint|normal_|uniform_|"
          r"bernoulli_|result_type|_index_put_impl_|broadcast_tensors|lift|resolve_conj|"
          r"resolve_neg|"
          r"_unsafe_view|unsafe_view|empty_permuted)$|"
          r"memcpy|memset|^cuda(malloc|free|memcpy|memset)|copy_kernel|fill_kernel",
          why="copies, allocations, views and layout changes (data moved, not computed)"),
    _rule("elementwise/activation",
          r"^(relu|relu_|gelu|silu|silu_|sigmoid|tanh|hardtanh|elu|leaky_relu|mish|softplus|"
          r"threshold|threshold_backward|add|add_|sub|sub_|rsub|mul|mul_|div|div_|pow|sqrt|rsqrt|"
          r"exp|log|neg|abs|sign|clamp|clamp_|clamp_min|clamp_max|where|maximum|minimum|"
          r"dropout|native_dropout|native_dropout_backward|softmax|_softmax|"
          r"_softmax_backward_data|addcmul|addcmul_|addcdiv|addcdiv_|lerp|lerp_|sum|mean|max|min|"
          r"amax|amin|argmax|norm|linalg_vector_norm|square|reciprocal|erf|erfinv|cos|sin|"
          r"max_pool2d|max_pool2d_with_indices|max_pool2d_with_indices_backward|avg_pool2d|"
          r"avg_pool2d_backward|adaptive_avg_pool2d|_adaptive_avg_pool2d|"
          r"_adaptive_avg_pool2d_backward|mean_backward|sum_backward|eq|ne|lt|gt|le|ge|"
          r"logical_and|logical_or|logical_not|isfinite|isinf|isnan|all|any|cumsum|"
          r"gelu_backward|silu_backward|sigmoid_backward|tanh_backward|hardtanh_backward|"
          r"_foreach_add|bitwise_and|bitwise_or|floor|ceil|round|trunc|remainder|fmod|"
          r"expand_backward|_amp_foreach_non_finite_check_and_unscale_|_amp_update_scale_|"
          r"accumulate_grad|add_backward|mul_backward|div_backward|sub_backward|neg_backward|"
          r"pow_backward|sqrt_backward|exp_backward|relu_backward)$|"
          r"elementwise|reduce_kernel|vectorized|activation|^unrolled",
          why="pointwise maths, activations, reductions and pooling"),
)

_PREFIXES = ("autograd::engine::evaluate_function: ", "aten::", "torch::autograd::", "prims::",
             "c10d::", "profiler::")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NODE = re.compile(r"^([A-Za-z][A-Za-z0-9]*?)Backward\d*$")


def normalise(op: str) -> str:
    """The name the rules match: prefix off, an autograd node's forward op in ATen spelling
    (`NativeBatchNormBackward0` -> `native_batch_norm`), lower case."""
    name = op.strip()
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            if prefix == "c10d::":  # a collective: keep the namespace the rule matches on
                return name.lower()
            name = name[len(prefix):]
    node = _NODE.match(name)
    if node:
        name = _CAMEL.sub("_", node.group(1))
    elif name[:1].isupper() and name.isalnum():  # another autograd node: `AccumulateGrad`
        name = _CAMEL.sub("_", name)
    return name.lower()


@lru_cache(maxsize=8192)
def categorise(op: str, phase: str | None = None) -> str:
    """The category of `op` (as the profiler names it) run in `phase`; `other` when no rule
    matches (a Python-level range, a runtime call)."""
    name = normalise(op)
    for rule in RULES:
        if rule.phase is not None and rule.phase != phase:
            continue
        if rule.pattern.search(name):
            return rule.category
    return OTHER
