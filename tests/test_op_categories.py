"""The one op-category rule table, held to the ops our families really emit (captured on this CPU
into tests/fixtures/profiled_ops.tsv, categories reviewed by hand) and to the names CUDA and
data-parallel traces carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from bigtrain.common import op_categories
from bigtrain.common.op_categories import CATEGORIES, RULES, categorise, normalise

FIXTURE = Path(__file__).parent / "fixtures" / "profiled_ops.tsv"


def _fixture_lines() -> list[tuple[str, str, str]]:
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "op\tphase\tcategory"
    return [tuple(line.split("\t")) for line in lines[1:] if line]  # type: ignore[misc]


def test_the_fixture_covers_every_family_we_capture() -> None:
    ops = {op for op, _, _ in _fixture_lines()}
    for op in ("aten::addmm", "aten::native_batch_norm_backward", "aten::mkldnn_convolution",
               "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::mkldnn_rnn_layer",
               "aten::nll_loss_forward", "aten::_fused_adam_", "aten::_foreach_addcdiv_",
               "aten::native_layer_norm"):
        assert op in ops, op


@pytest.mark.parametrize(("op", "phase", "category"), _fixture_lines())
def test_every_captured_op_falls_into_its_reviewed_category(op: str, phase: str,
                                                            category: str) -> None:
    assert categorise(op, phase) == category


@pytest.mark.parametrize(("op", "phase", "category"), [
    # the optimizer phase is optimizer work; the same op elsewhere is what it is
    ("aten::mul_", "optimizer", "optimizer"),
    ("aten::mul_", "forward", "elementwise/activation"),
    # a collective is communication in every phase, the optimizer's included
    ("c10d::allreduce_", "backward", "communication"),
    ("gloo:all_reduce", "optimizer", "communication"),
    ("nccl:all_reduce", "communication", "communication"),
    ("record_param_comms", "backward", "communication"),
    ("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "backward",
     "communication"),
    # CUDA kernel names
    ("sm90_xmma_gemm_f32f32_tf32f32_f32_tn_n_tilesize128x128x32", "forward", "matmul/conv"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>",
     "forward", "elementwise/activation"),
    ("Memcpy HtoD (Pageable -> Device)", "forward", "copy/memory"),
    ("void cutlass::Kernel2<cutlass_80_tensorop_s1688gemm_64x64_16x6_tn_align4>", "backward",
     "matmul/conv"),
    ("void at::native::(anonymous namespace)::batch_norm_backward_kernel<float>", "backward",
     "normalization"),
    ("fmha_cutlassF_f32_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel)",
     "forward", "attention"),
    # what no rule names
    ("cudaLaunchKernel", "forward", "other"),
    ("DistributedDataParallel.forward", "forward", "communication"),
    ("my_plugin::mystery_op", "backward", "other"),
])
def test_names_outside_the_cpu_fixture(op: str, phase: str, category: str) -> None:
    assert categorise(op, phase) == category


def test_an_autograd_node_reads_as_its_forward_op() -> None:
    assert normalise("autograd::engine::evaluate_function: NativeBatchNormBackward0") == \
        "native_batch_norm"
    assert normalise("AddmmBackward0") == "addmm"
    assert normalise("torch::autograd::AccumulateGrad") == "accumulate_grad"
    assert normalise("aten::native_layer_norm") == "native_layer_norm"


def test_every_category_is_reachable_and_the_table_is_the_only_one() -> None:
    from bigtrain.profiles import load

    assert {r.category for r in RULES} | {op_categories.OTHER} == set(CATEGORIES)
    assert load.CATEGORIES is CATEGORIES  # the analysing side names the same tuple


def test_a_rule_naming_an_unknown_category_fails_at_import() -> None:
    with pytest.raises(ValueError, match="category 'maths'"):
        op_categories._rule("maths", r"x")
