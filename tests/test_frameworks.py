"""Issue 28, the `framework` axis: optional with torch as its default (every earlier cell keeps its
id and label), cells of a missing framework `unsupported` with the install line before anything
runs, one framework per worker process in the local pool, and a backend's measurement turned into
a record with the fields every torch record has."""

from __future__ import annotations

import dataclasses
import os

import pytest
from conftest import REPO, TESTS_DIR, run_cli
from framework_workers import framework_reporter

from bigtrain import frameworks
from bigtrain.cells.axes import AXIS_BY_NAME
from bigtrain.cells.matrix import Cell, DeviceInventory, cell_id_for, expand
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.cells.spec import spec_from_preset
from bigtrain.common.errors import BadInput
from bigtrain.frameworks.base import FLOPS_SOURCES, FrameworkMeasurement
from bigtrain.results.schema import CellRecord
from bigtrain.results.store import json_problem
from bigtrain.run.job import CellJob
from bigtrain.run.local_pool import LocalPoolExecutor
from bigtrain.run.measured import framework_record

CPU_ONLY = DeviceInventory(cuda_count=0)


def test_the_framework_axis_is_optional_with_torch_its_default_and_lists_every_backend() -> None:
    axis = AXIS_BY_NAME["framework"]
    assert axis.default == ("torch",) and not axis.required_in_preset
    assert axis.choice_list() == frameworks.FRAMEWORKS == ("torch", "jax", "tensorflow")
    assert axis.parse_values(["jax", "torch", "jax"], "--framework") == ("jax", "torch")
    with pytest.raises(BadInput, match="unknown framework 'mxnet'; valid choices: torch, jax, "
                                       "tensorflow"):
        axis.parse_values(["mxnet"], "--framework")


def test_cell_ids_and_labels_of_torch_cells_are_those_from_before_the_axis() -> None:
    cells = expand(spec_from_preset("ci"), CPU_ONLY)
    ids = {c.label: c.cell_id for c in cells}
    # pinned: what main computed before the framework axis existed
    assert ids["mlp:seed sgd/foreach fp32 bs=64 cpu"] == "59280d1a30e0"
    assert ids["mlp:seed adam/foreach fp32 bs=64 cpu"] == "da0405a771ac"
    for cell in cells:
        assert cell.framework == "torch"
        assert cell.cell_id == cell_id_for({k: v for k, v in cell.axes().items()
                                            if k != "framework"})
        assert "torch" not in cell.label.split()


def _pretend_missing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A backend module that cannot be imported (the framework's package is missing)."""
    monkeypatch.setitem(frameworks.BACKENDS, name, "bigtrain.frameworks.no_such_backend_module")
    monkeypatch.setattr(frameworks, "_loaded", {})
    monkeypatch.setattr(frameworks, "_import_errors", {})


def test_cells_of_a_framework_that_cannot_load_are_unsupported_with_the_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_missing(monkeypatch, "jax")
    spec = spec_from_preset("ci", {"model": "mlp:seed", "optimizer": "sgd", "precision": "fp32",
                                   "device": "cpu", "framework": "torch,jax"})
    torch_cell, jax_cell = expand(spec, CPU_ONLY)
    assert (torch_cell.framework, torch_cell.status) == ("torch", "pending")
    assert jax_cell.framework == "jax" and jax_cell.status == "unsupported"
    assert "no_such_backend_module" in jax_cell.reason
    assert jax_cell.cell_id != torch_cell.cell_id and jax_cell.label.endswith(" jax")


class _MissingJax:
    """A jax backend whose package is absent (the import boundary, faked)."""

    name = "jax"
    install_line = "pip install -e '.[jax]'"

    def missing_reason(self) -> str:
        return "the jax framework needs jax, not installed"


def test_a_backend_whose_package_is_missing_names_the_install_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frameworks, "_loaded", {"jax": _MissingJax()})
    reason = frameworks.missing_reason("jax")
    assert reason == ("the jax framework needs jax, not installed; install it with: "
                      "pip install -e '.[jax]'")
    cell = Cell(cell_id="x", model="mlp:seed", optimizer="sgd", impl="foreach", batch_norm="n/a",
                precision="fp32", device="cpu", batch_size=64, compile="off", framework="jax")
    assert frameworks.framework_cell_reason(cell) == reason
    assert frameworks.missing_reason("torch") is None


def test_converge_cells_of_another_framework_are_unsupported() -> None:
    spec = spec_from_preset("ci", {"model": "mlp:digits", "optimizer": "sgd",
                                   "precision": "fp32", "device": "cpu",
                                   "framework": "jax", "protocol": "converge"})
    [cell] = expand(spec, CPU_ONLY)
    assert cell.status == "unsupported" and "step-time protocol only" in cell.reason


def test_an_unknown_framework_flag_exits_2_with_the_choices(tmp_path) -> None:
    result = run_cli("sweep", "--preset", "ci", "--framework", "mxnet", "--dry-run",
                     "--out", str(tmp_path))
    assert result.exit_code == 2
    assert "unknown framework 'mxnet'" in result.output and "torch, jax, tensorflow" in result.output


# -- the record a backend's measurement becomes --------------------------------------------------
def _job(framework: str = "jax", model: str = "transformer:tiny", batch: int = 8) -> CellJob:
    cell = Cell(cell_id="f00d", model=model, optimizer="adam", impl="foreach",
                batch_norm="n/a", precision="fp32", device="cpu", batch_size=batch,
                compile="off", framework=framework)
    return CellJob(run_id="r", cell=cell, repeat=0, device="cpu",
                   settings=StepTimeSettings(warmup_s=0.0, duration_s=0.01, min_steps=1))


def test_a_framework_measurement_becomes_a_record_with_the_torch_records_fields() -> None:
    measurement = FrameworkMeasurement(
        step_times_s=(0.02, 0.01, 0.03), warmup_s=0.5, compile_s=1.25, samples_per_step=8,
        param_count=1234, flops_per_step=4e9, flops_source="framework-cost-analysis",
        peak_memory_bytes=None, losses=(2.0, 1.5, 1.0),
        threads={"torch_intra_op_threads": 2}, versions={"jax": "0.10.2", "flax": "0.12.8"})
    record = framework_record(_job(), measurement, "2026-12-07T00:00:00+00:00",
                              {"peak_rss_bytes": 2**20, "extra": {"window_hooks": "backend"}})
    assert isinstance(record, CellRecord) and json_problem(record.to_json()) is None
    assert record.status == "ok" and record.framework == "jax"
    assert record.step_time_s.median == 0.02 and record.step_times_s == (0.02, 0.01, 0.03)
    # transformer items are tokens: 8 sequences of 64
    assert (record.item_unit, record.items_per_step) == ("tokens", 8 * 64)
    assert record.items_per_s == pytest.approx(8 * 64 / 0.02)
    assert record.samples_per_s == pytest.approx(8 / 0.02)
    assert (record.loss_first, record.loss_last) == (2.0, 1.0)
    assert record.framework_version == "0.10.2" and record.framework_versions["flax"] == "0.12.8"
    assert record.flops_source in FLOPS_SOURCES and record.compile_s == 1.25
    assert record.framework_threads == {"torch_intra_op_threads": 2}
    assert record.achieved_tflops == pytest.approx(4e9 / 0.02 / 1e12)
    assert record.peak_rss_bytes == 2**20 and record.extra["window_hooks"] == "backend"
    reread = CellRecord.from_json(record.to_json())
    assert reread.compile_s == 1.25 and reread.framework == "jax"


def test_a_non_finite_loss_in_the_window_makes_the_cell_diverged() -> None:
    measurement = FrameworkMeasurement(
        step_times_s=(0.01,), warmup_s=0.0, compile_s=None, samples_per_step=64, param_count=241,
        flops_per_step=1e5, flops_source="framework-cost-analysis", peak_memory_bytes=None,
        losses=(1.0, float("nan")))
    record = framework_record(_job(model="mlp:seed", batch=64), measurement, "t")
    assert record.status == "diverged" and "non-finite loss" in record.reason
    assert record.loss_last is None and json_problem(record.to_json()) is None


# -- one framework per worker process --------------------------------------------------------------
def test_the_local_pool_gives_each_framework_its_own_worker_and_reuses_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), str(REPO)]))
    order = ["torch", "jax", "torch", "tensorflow", "jax"]
    jobs = [dataclasses.replace(_job(framework), repeat=index) for index, framework in
            enumerate(order)]
    pool = LocalPoolExecutor(["cpu"], cell_timeout_s=120, log_dir=tmp_path,
                             worker_target=framework_reporter)
    records: list[CellRecord] = []
    try:
        pool.run(jobs, records.append)
    finally:
        pool.shutdown()
    records.sort(key=lambda r: r.repeat)
    assert [r.extra["cell_framework"] for r in records] == order
    assert [r.extra["worker_framework"] for r in records] == order
    pids = {}
    for record in records:
        pids.setdefault(record.extra["cell_framework"], set()).add(record.extra["worker_pid_seen"])
    assert all(len(p) == 1 for p in pids.values())  # one worker per framework, reused
    assert len(set().union(*pids.values())) == 3 and pool.workers_started == 3


def test_a_gpu_slot_stops_an_idle_worker_of_another_framework_before_starting_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS_DIR), str(REPO)]))
    jobs = [dataclasses.replace(_job(framework), repeat=index,
                                cell=dataclasses.replace(_job(framework).cell, device="cuda:0"),
                                device="cuda:0")
            for index, framework in enumerate(["torch", "jax", "torch"])]
    pool = LocalPoolExecutor(["cuda:0"], cell_timeout_s=120, log_dir=tmp_path,
                             worker_target=framework_reporter)
    records: list[CellRecord] = []
    try:
        pool.run(jobs, records.append)
        alive = sorted(pool._workers)
    finally:
        pool.shutdown()
    assert alive == ["cuda:0"]  # only the last framework's worker
    assert pool.workers_started == 3  # torch, jax, then a fresh torch: never two at once
    assert len({r.extra["worker_pid_seen"] for r in records}) == 3


def test_a_backend_without_a_flop_count_gets_the_torch_twins() -> None:
    from bigtrain.run.measured import torch_twin_flops

    measurement = FrameworkMeasurement(
        step_times_s=(0.01, 0.01), warmup_s=0.0, compile_s=None, samples_per_step=64,
        param_count=241, flops_per_step=None, flops_source="none", peak_memory_bytes=None,
        losses=(1.0, 0.9))
    job = _job(model="mlp:seed", batch=64)
    record = framework_record(job, measurement, "t")
    assert record.flops_source == "torch-twin"
    # forward 2*64*(10*20 + 20*1) = 28160 FLOPs; the count covers backward too
    assert record.flops_per_step == torch_twin_flops(job.cell) and record.flops_per_step > 28160


def test_the_worker_side_hands_the_backend_its_concrete_device_and_the_window_hooks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bigtrain.run.framework_cell import run_framework_cell

    seen: dict = {}

    class Recording:
        name = "jax"
        install_line = "pip install -e '.[jax]'"

        def missing_reason(self) -> None:
            return None

        def measure(self, cell, settings, seed, *, on_window_open, on_window_close):
            seen.update(device=cell.device, seed=seed, window=settings.duration_s)
            on_window_open()
            seen["opened"] = True
            on_window_close()
            return FrameworkMeasurement(
                step_times_s=(0.01, 0.02), warmup_s=0.1, compile_s=0.5, samples_per_step=64,
                param_count=241, flops_per_step=1e6, flops_source="framework-cost-analysis",
                peak_memory_bytes=None, losses=(1.0, 0.5))

    monkeypatch.setattr(frameworks, "_loaded", {"jax": Recording()})
    job = dataclasses.replace(_job(model="mlp:seed", batch=64), seed=7)
    job = dataclasses.replace(job, cell=dataclasses.replace(job.cell, device="cuda"),
                              device="cpu")  # as if the pool gave a `cuda` cell this slot
    record = run_framework_cell(job, "t")
    assert seen == {"device": "cpu", "seed": 7, "window": 0.01, "opened": True}
    assert record.status == "ok" and record.extra["window_hooks"] == "backend"
    assert record.peak_rss_bytes and record.host_load is not None
    assert record.device == "cuda"  # the record keeps the cell's own axes


def test_bigbench_list_frameworks_says_what_is_missing_and_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frameworks, "_loaded", {"jax": _MissingJax()})
    monkeypatch.setattr(frameworks, "_import_errors", {"tensorflow": "ModuleNotFoundError: x"})
    result = run_cli("list", "frameworks")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.split()[:2] == ["torch", "installed:"] for line in lines)
    assert any("jax" in line and "not available" in line and "pip install -e '.[jax]'" in line
               for line in lines)
    assert any("tensorflow" in line and "cannot be loaded" in line for line in lines)
