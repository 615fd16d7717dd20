"""Issue 26, the lever axes: `checkpointing`, `grad_accum`, `parallel` are optional, keep every
earlier cell id at their defaults, mark impossible combinations before anything runs, and turn bad
input into exit 2 with the reason and the valid range."""

from __future__ import annotations

from pathlib import Path

import pytest

from bigtrain.cells.axes import AXIS_BY_NAME
from bigtrain.cells.matrix import DeviceInventory, cell_id_for, expand
from bigtrain.cells.spec import spec_from_preset
from bigtrain.common.errors import BadInput
from conftest import run_cli, write_preset

CPU_ONLY = DeviceInventory(cuda_count=0)
LEVERS = ("checkpointing", "grad_accum", "parallel")


def test_the_lever_axes_are_optional_with_defaults_off_1_ddp() -> None:
    assert {name: AXIS_BY_NAME[name].default for name in LEVERS} == {
        "checkpointing": ("off",), "grad_accum": (1,), "parallel": ("ddp",)}
    assert not any(AXIS_BY_NAME[name].required_in_preset for name in LEVERS)
    assert AXIS_BY_NAME["grad_accum"].parse_values(["1", 4, "2", "4"], "--grad-accum") == (1, 4, 2)
    for bad, words in (("0", "must be >= 1"), ("four", "not a whole number"),
                       (1.5, "not a whole number")):
        with pytest.raises(BadInput, match=words):
            AXIS_BY_NAME["grad_accum"].parse_values([bad], "--grad-accum")
    with pytest.raises(BadInput, match="ddp, fsdp, fsdp-offload"):
        AXIS_BY_NAME["parallel"].parse_values(["zero3"], "--parallel")


def test_cell_ids_and_labels_at_the_defaults_are_those_of_cells_before_the_levers() -> None:
    cells = expand(spec_from_preset("ci"), CPU_ONLY)
    assert cells
    for cell in cells:
        before = {k: v for k, v in cell.axes().items() if k not in LEVERS}
        assert cell.cell_id == cell_id_for(before)
        assert not {"ckpt", "ga", "fsdp"} & set(cell.label.split())
    # pinned ids, as main computed them before the levers existed
    ids = {c.label: c.cell_id for c in cells}
    assert ids["mlp:seed sgd/foreach fp32 bs=64 cpu"] == "59280d1a30e0"
    assert ids["mlp:seed adam/foreach fp32 bs=64 cpu"] == "da0405a771ac"
    spec = spec_from_preset("ci", {"model": "transformer:tiny", "optimizer": "sgd",
                                   "precision": "fp32", "device": "cpu", "world_size": "1,2"})
    assert [c.cell_id for c in expand(spec, CPU_ONLY)] == ["9e4c2d8a0a20", "98a6b0a53e75"]


def test_lever_values_make_new_cells_and_impossible_ones_are_marked_with_reasons() -> None:
    spec = spec_from_preset("ci", {"model": "transformer:tiny,mlp:seed", "optimizer": "sgd",
                                   "precision": "fp32", "device": "cpu",
                                   "checkpointing": "off,on", "grad_accum": "1,2",
                                   "world_size": "1,2", "parallel": "ddp,fsdp,fsdp-offload"})
    cells = expand(spec, CPU_ONLY)
    assert len({c.cell_id for c in cells}) == len(cells) == 2 * 2 * 2 * 2 * 3
    by = {(c.model, c.checkpointing, c.grad_accum, c.world_size, c.parallel): c for c in cells}
    assert by[("transformer:tiny", "on", 2, 2, "fsdp")].status == "pending"
    assert by[("transformer:tiny", "on", 2, 2, "fsdp")].label.endswith("ws 2 ckpt ga 2 fsdp")
    one_rank = by[("transformer:tiny", "off", 1, 1, "fsdp")]
    assert one_rank.status == "skipped" and "world_size 1" in one_rank.reason
    offload = by[("transformer:tiny", "off", 1, 2, "fsdp-offload")]
    assert offload.status == "unsupported" and "CPUOffloadPolicy" in offload.reason
    mlp = by[("mlp:seed", "on", 1, 1, "ddp")]
    assert mlp.status == "unsupported" and "mlp:seed has none" in mlp.reason
    assert by[("mlp:seed", "off", 2, 1, "ddp")].status == "pending"


def test_grad_accum_in_graphs_or_converge_cells_is_unsupported() -> None:
    spec = spec_from_preset("ci", {"model": "transformer:tiny", "optimizer": "sgd",
                                   "precision": "fp32", "device": "cuda", "grad_accum": "2",
                                   "cuda_graphs": "on"})
    [cell] = expand(spec, DeviceInventory(cuda_count=1, cuda_bf16=(True,)))
    assert cell.status == "unsupported" and "grad_accum > 1" in cell.reason


@pytest.mark.parametrize("flags, words", [
    (("--model", "transformer:tiny", "--grad-accum", "3"),
     "grad_accum 3 does not divide batch size 8 of transformer:tiny"),
    (("--model", "mlp:seed", "--batch-size", "6", "--grad-accum", "4"),
     "valid grad_accum for it: 1, 2, 3, 6"),
    (("--model", "mlp:seed", "--parallel", "fsdp"), "valid range for fsdp: world_size >= 2"),
    (("--model", "mlp:seed", "--grad-accum", "0"), "grad_accum must be >= 1"),
])
def test_bad_lever_input_exits_2_with_the_reason_and_the_valid_range(
        tmp_path: Path, flags: tuple[str, ...], words: str) -> None:
    preset = write_preset(tmp_path, ["mlp:seed"])
    result = run_cli("sweep", "--preset", str(preset), "--device", "cpu", *flags, "--dry-run")
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split())
    assert "Traceback" not in result.output
