"""Expansion of a spec into cells, skip rules and stable cell ids."""

from __future__ import annotations

from bigtrain.cells.matrix import DeviceInventory, cell_id_for, expand
from bigtrain.cells.spec import spec_from_preset

CPU_ONLY = DeviceInventory(cuda_count=0)
TWO_GPUS = DeviceInventory(cuda_count=2, cuda_bf16=(True, True))


def _expand(overrides: dict, inventory: DeviceInventory = CPU_ONLY):
    return expand(spec_from_preset("ci", overrides), inventory)


def test_models_without_bn_slots_run_once_with_na() -> None:
    cells = _expand({"model": "mlp:seed,mlp:small", "batch_norm": "on,off"})
    seed = [c for c in cells if c.model == "mlp:seed"]
    small = [c for c in cells if c.model == "mlp:small"]
    assert {c.batch_norm for c in seed} == {"n/a"}
    assert len(seed) == len(small) // 2
    assert {c.batch_norm for c in small} == {"on", "off"}


def test_fp16_and_tf32_on_cpu_are_skipped_with_a_reason() -> None:
    cells = _expand({"precision": "fp32,tf32,fp16,bf16", "model": "mlp:seed", "optimizer": "sgd"})
    by_precision = {c.precision: c for c in cells}
    assert by_precision["fp32"].status == "pending"
    assert by_precision["bf16"].status == "pending"
    for name in ("tf32", "fp16"):
        assert by_precision[name].status == "skipped"
        assert "needs cuda, not cpu" in by_precision[name].reason


def test_absent_gpu_is_skipped_not_an_error() -> None:
    cells = _expand({"device": "cpu,cuda,cuda:3", "model": "mlp:seed", "optimizer": "sgd"},
                    TWO_GPUS)
    status = {c.device: (c.status, c.reason) for c in cells}
    assert status["cpu"][0] == "pending"
    assert status["cuda"][0] == "pending"
    assert status["cuda:3"][0] == "skipped"
    assert "2 CUDA device(s) visible" in status["cuda:3"][1]
    cpu_box = _expand({"device": "cuda", "model": "mlp:seed", "optimizer": "sgd"})
    assert all(c.status == "skipped" and "no CUDA device" in c.reason for c in cpu_box)


def test_auto_means_gpus_when_present_else_cpu() -> None:
    assert {c.device for c in _expand({"device": "auto"})} == {"cpu"}
    assert {c.device for c in _expand({"device": "auto"}, TWO_GPUS)} == {"cuda"}


def test_bf16_on_pre_ampere_gpu_is_skipped() -> None:
    old = DeviceInventory(cuda_count=1, cuda_bf16=(False,))
    cells = _expand({"device": "cuda", "precision": "bf16", "model": "mlp:seed",
                     "optimizer": "sgd"}, old)
    assert cells[0].status == "skipped" and "compute capability 8.0" in cells[0].reason


def test_fused_rmsprop_is_unsupported_when_torch_lacks_it() -> None:
    import inspect

    import torch

    cells = _expand({"optimizer": "sgd,rmsprop", "impl": "fused", "model": "mlp:seed"})
    status = {c.optimizer: (c.status, c.reason) for c in cells}
    assert status["sgd"][0] == "pending"  # torch >= 2.4 has fused SGD on the CPU
    if "fused" not in inspect.signature(torch.optim.RMSprop).parameters:
        assert status["rmsprop"][0] == "unsupported"
        assert "no fused RMSprop" in status["rmsprop"][1]


def test_cell_ids_are_stable_and_depend_only_on_axes() -> None:
    first = _expand({"model": "mlp:seed,cnn:tiny"})
    second = _expand({"model": "cnn:tiny,mlp:seed"})  # another order, another "run"
    assert {c.cell_id: c.axes() for c in first} == {c.cell_id: c.axes() for c in second}
    # "default" resolves to the workload's batch size, so both spellings are one cell.
    explicit = _expand({"model": "mlp:seed", "batch_size": "64", "optimizer": "sgd"})
    default = _expand({"model": "mlp:seed", "batch_size": "default", "optimizer": "sgd"})
    assert explicit[0].cell_id == default[0].cell_id
    # Pinned: an id must never change between versions, or old baselines stop matching.
    assert cell_id_for({"model": "mlp:seed", "optimizer": "sgd", "impl": "foreach",
                        "batch_norm": "n/a", "precision": "fp32", "device": "cpu",
                        "batch_size": 64, "compile": "off"}) == "59280d1a30e0"
    assert explicit[0].cell_id == "59280d1a30e0"
    assert len({c.cell_id for c in first}) == len(first)


def test_expansion_order_follows_the_axes() -> None:
    cells = _expand({"model": "mlp:seed", "optimizer": "adam,sgd", "precision": "fp32,bf16"})
    assert [(c.optimizer, c.precision) for c in cells] == [
        ("adam", "fp32"), ("adam", "bf16"), ("sgd", "fp32"), ("sgd", "bf16")]
