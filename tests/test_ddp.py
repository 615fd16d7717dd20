"""Issue 14: data-parallel cells run for real -- gloo with 2 ranks on the CPU (plumbing only: record
fields present and consistent, every rank's figures, all ranks' items counted, efficiency in the
report), a rank that dies or hangs ending the cell as a record with no process left, and NCCL with
world size 1 on a GPU. No assertion here depends on how fast anything ran."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import psutil
import pytest
import torch

from bigtrain.cells.matrix import DeviceInventory, cell_id_for, expand
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.report.build import write_report
from bigtrain.run.job import CellJob
from bigtrain.run.sweep import SweepOptions, run_sweep
from bigtrain.cells.spec import preset_toml, spec_from_preset
from conftest import REPO, TESTS_DIR

QUICK = {"warmup_s": 0.02, "duration_s": 0.05, "min_steps": 3, "repeats": 1}


def _preset(folder: Path, models: list[str], world_sizes: list[int], timeout_s: float) -> Path:
    path = folder / "ddp.toml"
    path.write_text(preset_toml(model=models, optimizer=["sgd"], world_size=world_sizes,
                                batch_norm=["on"], measure={**QUICK, "cell_timeout_s": timeout_s}))
    return path


def _rank_processes(run_id: str) -> list[psutil.Process]:
    """Rank processes of this test's run still alive (zombies awaiting their reaper excluded)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if ("bigtrain.run.rank" in cmdline and run_id in cmdline
                and process.info["status"] != psutil.STATUS_ZOMBIE):
            found.append(process)
    return found


def _none_left(run_id: str, within_s: float = 30) -> bool:
    deadline = time.monotonic() + within_s
    while _rank_processes(run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not _rank_processes(run_id)


@pytest.fixture
def rank_faults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the test-only `ddpfault` family here, in workers and in their ranks."""
    monkeypatch.setenv("BIGTRAIN_PLUGINS", "ddp_fault_workloads")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), str(REPO),
                                                      os.environ.get("PYTHONPATH", "")]))
    import ddp_fault_workloads  # noqa: F401


def test_two_gloo_ranks_record_every_rank_and_the_report_scales_them(tmp_path: Path) -> None:
    preset = _preset(tmp_path, ["mlp:small"], [1, 2], timeout_s=300)
    run_id = "ddp-gloo"
    outcome = run_sweep(spec_from_preset(str(preset)),
                        SweepOptions(out_dir=tmp_path / "results", run_id=run_id))
    by_ws = {r.world_size: r for r in outcome.records}
    one, two = by_ws[1], by_ws[2]
    assert one.status == "ok", one.reason
    assert two.status == "ok", (two.reason, two.traceback_tail)
    # world_size 1 is the plain cell it always was: no DDP fields, its old id.
    assert one.dist_backend is None and one.rank_step_time_s is None
    assert one.cell_id == cell_id_for({k: v for k, v in one.axes().items() if k != "world_size"})
    assert two.cell_id != one.cell_id
    # Every rank measured; the cell's distribution is the slowest rank's.
    assert two.dist_backend == "gloo"
    assert len(two.rank_step_time_s) == 2 and all(t > 0 for t in two.rank_step_time_s)
    assert two.step_time_s.median == max(two.rank_step_time_s)
    assert len(two.step_times_s) == two.step_time_s.n >= QUICK["min_steps"]
    # All ranks' items: the per-rank batch is fixed, so a step processes 2 batches.
    assert two.batch_size == one.batch_size
    assert two.items_per_step == 2 * one.items_per_step
    assert two.items_per_s == pytest.approx(two.items_per_step / two.step_time_s.median)
    assert two.no_sync_step_time_s > 0
    expected_share = 100 * max(0.0, 1 - two.no_sync_step_time_s / two.step_time_s.median)
    assert two.comm_share_pct == pytest.approx(expected_share)
    assert two.extra["slowest_rank"] in (0, 1)
    pids = two.extra["rank_pids"]
    assert len(set(pids)) == 2 and two.worker_pid not in pids
    assert _none_left(run_id)
    # The report computes the efficiency from the two records.
    report = tmp_path / "report"
    write_report([tmp_path / "results" / run_id], report)
    rows = list(csv.DictReader((report / "tables" / "scaling.csv").open()))
    assert [int(r["world size"]) for r in rows] == [1, 2]
    expected = 100 * two.items_per_s / (2 * one.items_per_s)
    assert float(rows[1]["scaling efficiency (%)"]) == pytest.approx(expected)
    assert float(rows[0]["scaling efficiency (%)"]) == pytest.approx(100)
    assert (report / "figures" / "scaling-efficiency.png").stat().st_size > 0
    assert "Data-parallel scaling" in (report / "index.html").read_text()


def test_a_rank_that_dies_or_hangs_ends_its_cell_with_no_process_left(
        tmp_path: Path, rank_faults: None) -> None:
    preset = _preset(tmp_path, ["ddpfault:crash-rank1", "ddpfault:hang-rank1"], [2],
                     timeout_s=45)
    run_id = "ddp-faults"
    outcome = run_sweep(spec_from_preset(str(preset)),
                        SweepOptions(out_dir=tmp_path / "results", run_id=run_id))
    crash, hang = outcome.records
    assert crash.status == "crashed", (crash.reason, crash.traceback_tail)
    assert crash.reason.startswith("rank 1 killed by SIGKILL"), crash.reason
    assert crash.dist_backend == "gloo"
    assert hang.status == "timeout", (hang.reason, hang.traceback_tail)
    assert hang.reason.startswith("rank 1 stopped making progress"), hang.reason
    assert _none_left(run_id), [p.info for p in _rank_processes(run_id)]


# -- on a GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nccl_world_size_1_measures_through_ddp() -> None:
    from bigtrain.run.distributed import run_distributed_cell

    spec = spec_from_preset("ci", {"model": "mlp:small", "optimizer": "sgd", "precision": "fp32",
                                   "device": "cuda:0", "batch_norm": "on"})
    cell = expand(spec, DeviceInventory.detect())[0]
    job = CellJob(run_id="nccl-1", cell=cell, repeat=0, device="cuda:0", timeout_s=300,
                  settings=StepTimeSettings(warmup_s=0.1, duration_s=0.3, min_steps=5))
    record = run_distributed_cell(job, world_size=1)
    assert record.status == "ok", (record.reason, record.traceback_tail)
    assert record.dist_backend == "nccl"
    assert len(record.rank_step_time_s) == 1
    assert record.step_time_s.median == record.rank_step_time_s[0]
    assert record.items_per_step == cell.batch_size
    assert record.device_name and record.device_name != "CPU"
    assert _none_left("nccl-1")
