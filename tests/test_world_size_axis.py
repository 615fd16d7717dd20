"""Issue 14: the `world_size` axis (optional, default 1), its skip rules, the efficiency formula,
and the local pool giving a data-parallel cell the devices it needs alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from bigtrain.cells.axes import AXIS_BY_NAME, PROGRESS_STYLE, cell_label
from bigtrain.common.errors import BadInput
from bigtrain.cells.matrix import DeviceInventory, cell_id_for, expand
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.report.scaling import scaling_efficiency
from bigtrain.results.schema import CellRecord, SchemaError
from bigtrain.run.job import CellJob
from bigtrain.run.local_pool import LocalPoolExecutor, _Worker
from bigtrain.cells.spec import spec_from_preset
from conftest import REPO, run_cli, write_preset

TWO_GPUS = DeviceInventory(cuda_count=2, cuda_bf16=(True, True))


# -- the axis ---------------------------------------------------------------------------------
def test_world_size_parses_whole_numbers_and_names_bad_values() -> None:
    entry = AXIS_BY_NAME["world_size"]
    assert entry.parse_values(["1", 2, "4", "2"], "--world-size") == (1, 2, 4)
    for bad, words in (("0", "must be >= 1, got 0"), ("two", "'two' is not a whole number"),
                       (1.5, "1.5 is not a whole number"), (True, "True is not a whole number")):
        with pytest.raises(BadInput, match=words) as caught:
            entry.parse_values([bad], "--world-size")
        assert str(caught.value).startswith("--world-size: ")


def test_a_bad_world_size_flag_exits_2_naming_it(tmp_path: Path) -> None:
    preset = write_preset(tmp_path, ["mlp:seed"])
    result = run_cli("sweep", "--preset", str(preset), "--world-size", "0", "--dry-run")
    assert result.exit_code == 2
    assert "--world-size" in result.output and "got 0" in result.output
    assert "Traceback" not in result.output


def test_world_size_1_leaves_ids_and_labels_as_they_were() -> None:
    cells = expand(spec_from_preset("ci"), TWO_GPUS)
    for cell in cells:
        axes = cell.axes()
        assert axes["world_size"] == 1
        without = {k: v for k, v in axes.items() if k != "world_size"}
        assert cell.cell_id == cell_id_for(without)  # the id a pre-axis cell had
        assert "ws" not in cell.label.split()
    spec = spec_from_preset("ci", {"world_size": "1,2", "device": "cpu"})
    both = expand(spec, TWO_GPUS)
    ones = [c for c in both if c.world_size == 1]
    twos = [c for c in both if c.world_size == 2]
    assert len(ones) == len(twos) > 0
    assert {c.cell_id for c in ones}.isdisjoint(c.cell_id for c in twos)
    assert all(c.label.endswith(" ws 2") for c in twos)
    assert cell_label(twos[0].axes(), PROGRESS_STYLE) == twos[0].label


def test_a_preset_may_leave_world_size_out_and_a_record_defaults_to_1(tmp_path: Path) -> None:
    preset = tmp_path / "p.toml"
    text = write_preset(tmp_path, ["mlp:seed"]).read_text()
    preset.write_text("\n".join(l for l in text.splitlines() if not l.startswith("world_size")))
    assert spec_from_preset(str(preset)).world_size == (1,)
    record = {"schema_version": 1, "run_id": "r", "cell_id": "c", "model": "mlp:seed",
              "optimizer": "sgd",
              "impl": "foreach", "batch_norm": "n/a", "precision": "fp32", "device": "cpu",
              "batch_size": 64, "compile": "off", "status": "skipped", "reason": "why"}
    assert CellRecord.from_json(record).world_size == 1
    with pytest.raises(SchemaError, match="world_size"):
        CellRecord.from_json({**record, "world_size": 0})
    with pytest.raises(SchemaError, match="comm_share_pct"):
        CellRecord.from_json({**record, "comm_share_pct": -1})
    with pytest.raises(SchemaError, match="dist_backend"):
        CellRecord.from_json({**record, "dist_backend": "mpi"})


# -- what can run here ------------------------------------------------------------------------
def _by_ws(spec_overrides: dict[str, str], inventory: DeviceInventory) -> dict[int, object]:
    cells = expand(spec_from_preset("ci", {"model": "mlp:seed", "optimizer": "sgd",
                                           "precision": "fp32", **spec_overrides}), inventory)
    return {c.world_size: c for c in cells}


def test_gpu_cells_need_as_many_gpus_as_ranks_and_start_at_cuda_0() -> None:
    cells = _by_ws({"device": "cuda", "world_size": "1,2,4"}, TWO_GPUS)
    assert cells[1].status == cells[2].status == "pending"
    assert cells[4].status == "skipped"
    assert cells[4].reason == "world_size 4 needs 4 GPUs; 2 CUDA device(s) visible"
    on_second = _by_ws({"device": "cuda:1", "world_size": "2"}, TWO_GPUS)[2]
    assert on_second.status == "skipped" and "cuda:0..1" in on_second.reason
    cpu = _by_ws({"device": "cpu", "world_size": "8"}, DeviceInventory(cuda_count=0))[8]
    assert cpu.status == "pending"  # ranks share the CPU (pinned where there are enough cores)
    graphs = _by_ws({"device": "cuda", "world_size": "2", "cuda_graphs": "on"}, TWO_GPUS)[2]
    assert graphs.status == "skipped" and "CUDA graphs" in graphs.reason


def test_scaling_efficiency_is_throughput_over_n_times_one_rank() -> None:
    assert scaling_efficiency(1800.0, 1000.0, 2) == pytest.approx(0.9)
    assert scaling_efficiency(1000.0, 1000.0, 1) == 1.0
    with pytest.raises(ValueError):
        scaling_efficiency(1.0, 0.0, 2)


# -- the local pool holds a data-parallel cell's devices --------------------------------------
class _FakeProcess:
    """Stands in for a worker process (the boundary): never started, never ready."""

    pid = None
    sentinel = -1


def _job(cell, device: str) -> CellJob:  # noqa: ANN001
    return CellJob(run_id="r", cell=cell, repeat=0, device=device,
                   settings=StepTimeSettings(warmup_s=0, duration_s=0.1, min_steps=1))


def _pool(monkeypatch: pytest.MonkeyPatch, slots: list[str]) -> LocalPoolExecutor:
    pool = LocalPoolExecutor(slots, cell_timeout_s=77)

    def start(slot: str, framework: str = "torch") -> _Worker:
        worker = _Worker(slot=slot, process=_FakeProcess(), conn=None, log_path="")  # type: ignore[arg-type]
        pool._workers[slot] = worker
        return worker

    monkeypatch.setattr(pool, "_start_worker", start)
    return pool


def test_a_gpu_data_parallel_cell_runs_alone_on_cuda_0_and_keeps_the_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cells = _by_ws({"device": "cuda", "world_size": "1,2"}, TWO_GPUS)
    single, ddp = cells[1], cells[2]
    pool = _pool(monkeypatch, ["cuda:0", "cuda:1"])
    started: list[CellJob] = []
    pool._dispatch([_job(single, "cuda"), _job(single, "cuda")], started.append)
    assert [j.device for j in started] == ["cuda:0", "cuda:1"]
    # cuda:0 is free, cuda:1 still busy: the data-parallel cell waits for every GPU, and the
    # single-GPU cell after it waits behind it (the given order).
    pool._workers["cuda:0"].job = None
    queue = [_job(ddp, "cuda"), _job(single, "cuda")]
    pool._dispatch(queue, started.append)
    assert len(started) == 2 and len(queue) == 2
    pool._workers["cuda:1"].job = None
    pool._dispatch(queue, started.append)
    assert started[-1].cell.world_size == 2 and started[-1].device == "cuda:0"
    assert started[-1].timeout_s == 77  # the ranks stop in time to name the one at fault
    assert pool._workers["cuda:0"].exclusive
    pool._dispatch(queue, started.append)
    assert len(queue) == 1  # cuda:1 is free, but the data-parallel cell holds every GPU
    pool._workers["cuda:0"].job = None
    pool._dispatch(queue, started.append)
    assert queue == [] and started[-1].cell.world_size == 1


def test_the_example_report_fixture_has_no_scaling_section() -> None:
    # Only runs with a data-parallel cell get the section (the committed example has none).
    from bigtrain.report.data import load_report_data
    from bigtrain.report.scaling import scaling_table

    data = load_report_data([REPO / "results" / "cpu-2vcpu-quick"])
    assert scaling_table(data) is None
