"""Issue 26: an FSDP2 cell at world size 2 on the CPU (gloo) runs for real and records its
sharding, every rank's memory and the communication share. Plumbing only: one short cell, and no
assertion on how fast it ran."""

from __future__ import annotations

import pytest

from bigtrain.cells.matrix import DeviceInventory, expand
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.cells.spec import spec_from_preset
from bigtrain.run.job import CellJob


def test_an_fsdp_cell_at_world_size_2_shards_per_block_and_records_every_rank() -> None:
    from bigtrain.run.distributed import run_distributed_cell

    spec = spec_from_preset("ci", {"model": "transformer:tiny", "optimizer": "adamw",
                                   "precision": "fp32", "device": "cpu", "world_size": "2",
                                   "parallel": "fsdp", "grad_accum": "2",
                                   "batch_size": "4"})
    [cell] = expand(spec, DeviceInventory(cuda_count=0))
    assert cell.status == "pending", cell.reason
    job = CellJob(run_id="levers-fsdp", cell=cell, repeat=0, device="cpu", timeout_s=240,
                  settings=StepTimeSettings(warmup_s=0.02, duration_s=0.05, min_steps=3))
    record = run_distributed_cell(job)
    assert record.status == "ok", (record.reason, record.traceback_tail)
    assert record.dist_backend == "gloo" and record.parallel == "fsdp"
    assert record.extra["fsdp_units"] == 3  # two decoder blocks, then the root
    assert "reduce-scatter" in record.extra["comm_share_method"]
    assert len(record.rank_peak_mem_bytes) == 2 and all(b > 0 for b in record.rank_peak_mem_bytes)
    assert record.micro_batch_size == 2 and record.samples_per_optimizer_step == 8
    assert record.samples_per_s == pytest.approx(8 / record.step_time_s.median)
    assert record.param_count > 0 and 0 <= record.comm_share_pct <= 100
