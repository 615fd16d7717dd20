"""Issue 12 item 10: the matrix is counted before it is expanded, and a huge one is refused with
the way to raise the limit, instead of minutes of silent expansion and gigabytes of cells."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bigtrain.cli import main
from bigtrain.common.errors import BadInput
from bigtrain.cells.matrix import DEFAULT_MAX_CELLS, DeviceInventory, expand, matrix_size
from bigtrain.run.sweep import SweepOptions, run_sweep
from bigtrain.cells.spec import spec_from_preset

CPU_ONLY = DeviceInventory(cuda_count=0)
BATCH_SIZES_3000 = ",".join(str(n) for n in range(1, 3001))


def test_the_size_is_the_product_of_the_axis_lengths() -> None:
    spec = spec_from_preset("ci", {"model": "mlp:seed,mlp:small", "optimizer": "sgd,adam,adamw",
                                   "batch_size": "8,16"})
    assert matrix_size(spec) == 2 * 3 * 1 * 1 * 1 * 1 * 2 * 1
    assert len(expand(spec, CPU_ONLY)) <= matrix_size(spec)  # an upper bound on the cells


@pytest.mark.timeout(120)  # expanding these ~10^9 combinations would take hours: count first
def test_a_huge_matrix_is_refused_before_expansion_naming_the_limit_flag() -> None:
    spec = spec_from_preset("full", {"batch_size": BATCH_SIZES_3000, "precision": "fp32,bf16",
                                     "device": "cpu,cuda,cuda:0,cuda:1,cuda:2,cuda:3"})
    size = matrix_size(spec)
    assert size > 10**6
    with pytest.raises(BadInput) as error:
        expand(spec, CPU_ONLY)
    message = str(error.value)
    assert f"the matrix has {size:,} cells" in message
    assert "3000 batch_size" in message and "6 device" in message  # which axis is long
    assert f"limit of {DEFAULT_MAX_CELLS:,}" in message
    assert f"--max-cells {size}" in message


def test_the_limit_can_be_lowered_and_raised() -> None:
    spec = spec_from_preset("ci")  # 6 combinations
    with pytest.raises(BadInput, match="the matrix has 6 cells .* limit of 5;"):
        expand(spec, CPU_ONLY, max_cells=5)
    assert len(expand(spec, CPU_ONLY, max_cells=6)) == 6


def test_the_cli_refuses_with_exit_2_and_accepts_with_max_cells() -> None:
    runner = CliRunner()
    refused = runner.invoke(main, ["sweep", "--preset", "ci", "--dry-run", "--max-cells", "5"])
    assert refused.exit_code == 2, refused.output
    assert "raise the limit with --max-cells 6" in refused.output
    accepted = runner.invoke(main, ["sweep", "--preset", "ci", "--dry-run", "--max-cells", "6"])
    assert accepted.exit_code == 0, accepted.output
    assert "6 cells" in accepted.output
    zero = runner.invoke(main, ["sweep", "--preset", "ci", "--dry-run", "--max-cells", "0"])
    assert zero.exit_code == 2 and "--max-cells" in zero.output


def test_a_sweep_over_the_limit_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="--max-cells"):
        run_sweep(spec_from_preset("ci"), SweepOptions(out_dir=tmp_path / "results", run_id="big",
                                                       max_cells=2))
    assert not (tmp_path / "results").exists()
