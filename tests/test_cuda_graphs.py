"""The `cuda_graphs` axis: plumbing through presets, manifests, cells and records without moving
any existing cell id; skipped off CUDA; the whole-step capture and its replay (on a GPU)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from bigtrain.cells.axes import axis
from bigtrain.common.errors import BadInput
from bigtrain.cells.matrix import DeviceInventory, cell_id_for, expand
from bigtrain.measure.cuda_graphs import (
    GraphedStep,
    capture_refusal,
    capture_training_step,
    make_capturable,
)
from bigtrain.measure.protocols import (
    PHASES_NOT_SEPARABLE,
    CellSkipped,
    StepTimeResult,
)
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.measure.step_loop import TrainingStep, measure_window, run_loop
from bigtrain.training.precision import resolve_precision
from bigtrain.results.schema import CellRecord
from bigtrain.cells.spec import spec_from_json, spec_from_preset

GPU = torch.cuda.is_available()
TWO_GPUS = DeviceInventory(cuda_count=2, cuda_bf16=(True, True))


# -- the axis ------------------------------------------------------------------------------------
def test_presets_and_manifests_without_the_axis_run_eagerly() -> None:
    spec = spec_from_preset("ci")  # written before the axis existed
    assert spec.cuda_graphs == ("off",)
    manifest_spec = spec.to_json()
    del manifest_spec["cuda_graphs"]  # an older run's manifest
    assert spec_from_json(manifest_spec) == spec


def test_the_flag_parses_on_and_off_and_names_the_choices() -> None:
    spec = spec_from_preset("ci", {"cuda_graphs": "off,on"})
    assert spec.cuda_graphs == ("off", "on")
    with pytest.raises(BadInput, match=r"--cuda-graphs: unknown cuda-graphs setting 'yes'; "
                                       r"valid choices: off, on"):
        spec_from_preset("ci", {"cuda_graphs": "yes"})


def test_at_its_default_the_axis_leaves_every_cell_id_as_it_was() -> None:
    eager = expand(spec_from_preset("ci"), TWO_GPUS)
    both = expand(spec_from_preset("ci", {"cuda_graphs": "off,on"}), TWO_GPUS)
    for cell in eager:
        axes = {k: v for k, v in cell.axes().items() if k != "cuda_graphs"}
        assert cell.cell_id == cell_id_for(axes)  # the id the cell had before the axis
    graphed = [c for c in both if c.cuda_graphs == "on"]
    assert [c.cell_id for c in both if c.cuda_graphs == "off"] == [c.cell_id for c in eager]
    assert len(graphed) == len(eager)
    assert not {c.cell_id for c in graphed} & {c.cell_id for c in eager}  # its own cells


def test_graphed_cells_are_skipped_off_cuda_with_the_reason() -> None:
    cells = expand(spec_from_preset("ci", {"cuda_graphs": "on", "device": "cpu,cuda"}), TWO_GPUS)
    on_cpu = [c for c in cells if c.device == "cpu"]
    on_gpu = [c for c in cells if c.device == "cuda"]
    assert on_cpu and all(c.status == "skipped" for c in on_cpu)
    assert on_cpu[0].reason == "CUDA graphs need a CUDA device; cpu cells run eagerly only"
    assert all(c.status == "pending" for c in on_gpu)


def test_labels_name_graphed_cells_and_leave_eager_ones_as_they_were() -> None:
    cell = expand(spec_from_preset("ci", {"cuda_graphs": "on", "device": "cuda"}), TWO_GPUS)[0]
    assert cell.label == "mlp:seed sgd/foreach fp32 bs=64 cuda cuda-graphs"
    eager = dataclasses.replace(cell, cuda_graphs="off")
    assert eager.label == "mlp:seed sgd/foreach fp32 bs=64 cuda"
    assert axis("cuda_graphs").flag == "--cuda-graphs"


def test_records_without_the_axis_read_as_eager() -> None:
    record = CellRecord(run_id="r", cell_id="c", model="mlp:seed", optimizer="sgd", impl="foreach",
                        batch_norm="n/a", precision="fp32", device="cpu", batch_size=64,
                        compile="off", status="skipped", reason="test").to_json()
    assert record["cuda_graphs"] == "off"
    del record["cuda_graphs"]
    assert CellRecord.from_json(json.loads(json.dumps(record))).cuda_graphs == "off"


# -- the step ------------------------------------------------------------------------------------
def _step(model: str = "mlp:seed", optimizer: str = "adam", precision: str = "fp32",
          device: str = "cpu") -> TrainingStep:
    from bigtrain.training.optim import build_optimizer, resolve_optimizer
    from bigtrain.workloads import resolve_model

    ref = resolve_model(model)
    workload = ref.family.build(ref.size.name, device=torch.device(device), seed=0)
    opt, opt_step = build_optimizer(resolve_optimizer(optimizer), "foreach",
                                    workload.model.parameters())
    return TrainingStep(workload, opt, opt_step, resolve_precision(precision), torch.device(device))


def test_capture_is_refused_on_the_cpu_and_with_a_grad_scaler() -> None:
    step = _step()
    assert capture_refusal(step, torch.device("cpu")) == (
        "CUDA graphs need a CUDA device; cpu cells run eagerly only")
    with pytest.raises(CellSkipped, match="need a CUDA device"):
        capture_training_step(step, torch.device("cpu"))
    step.scaler = object()  # what an fp16 recipe gives the step
    assert "GradScaler" in capture_refusal(step, torch.device("cuda"))


def test_optimizers_are_made_capturable_where_they_have_the_option() -> None:
    adam = _step(optimizer="adam").optimizer
    assert make_capturable(adam) is True
    assert all(group["capturable"] for group in adam.param_groups)
    assert make_capturable(_step(optimizer="sgd").optimizer) is False


def test_a_cell_whose_step_cannot_be_captured_is_recorded_as_skipped() -> None:
    from bigtrain.cells.matrix import Cell
    from bigtrain.run.cell import run_cell
    from bigtrain.run.job import CellJob

    # Past the matrix's own skip rule (as a capture failure on a GPU would be): the worker's path.
    cell = Cell(cell_id="x", model="mlp:seed", optimizer="adam", impl="foreach", batch_norm="n/a",
                precision="fp32", device="cpu", batch_size=8, compile="off", cuda_graphs="on")
    settings = StepTimeSettings(warmup_s=0.0, duration_s=0.01, min_steps=2)
    record = run_cell(CellJob(run_id="r", cell=cell, repeat=0, device="cpu", settings=settings))
    assert (record.status, record.reason) == (
        "skipped", "CUDA graphs need a CUDA device; cpu cells run eagerly only")
    assert record.cuda_graphs == "on" and record.traceback_tail is None


class _WholeStep(TrainingStep):
    """A real training step that, like a replayed graph, runs as one unit."""

    separable_phases = False


def test_a_step_timed_whole_has_step_times_and_no_phases() -> None:
    step = _step()
    step.__class__ = _WholeStep
    settings = StepTimeSettings(warmup_s=0.0, duration_s=0.01, min_steps=5)
    window = measure_window(step, torch.device("cpu"), settings)
    assert len(window.step_times_s) >= 5 and all(t > 0 for t in window.step_times_s)
    assert window.forward_s == window.backward_s == window.optimizer_s == ()

    loop = run_loop(step, torch.device("cpu"), settings)
    from bigtrain.measure.memory import PeakMemory

    result = StepTimeResult(loop=loop, peak=PeakMemory(allocated_bytes=None, reserved_bytes=None,
                                                       rss_bytes=1, rss_method="test"),
                            telemetry=None, telemetry_reason="test")
    built = type("Built", (), {"workload": step.workload, "optimizer": step.optimizer})()
    fields = result.record_fields(built)
    assert fields["status"] == "ok" and fields["step_time_s"].n == len(loop.window.step_times_s)
    assert fields["phase_time_s"] is None and fields["phase_times_s"] is None
    assert result.extra()["phase_times"] == PHASES_NOT_SEPARABLE


# -- on a GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA device")
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_captured_step_replays_the_eager_training(optimizer: str) -> None:
    device = torch.device("cuda")
    eager = _step(optimizer=optimizer, device="cuda")
    eager_losses = [eager().item() for _ in range(8)]

    graphed, notes = capture_training_step(_step(optimizer=optimizer, device="cuda"), device)
    assert isinstance(graphed, GraphedStep) and graphed.separable_phases is False
    assert notes["cuda_graph"]["optimizer_capturable"] is (optimizer == "adam")
    # The capture ran 3 eager warm-up steps (losses 0-2), recorded one step without running it,
    # and replayed it once to check it (loss 3): the next replays are the eager steps 4-6.
    replayed = [graphed().item() for _ in range(3)]
    assert all(math.isfinite(x) for x in replayed)
    assert replayed == pytest.approx(eager_losses[4:7], rel=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA device")
def test_a_graphed_cell_is_measured_whole() -> None:
    from bigtrain.cells.matrix import Cell
    from bigtrain.run.cell import run_cell
    from bigtrain.run.job import CellJob

    cell = Cell(cell_id="g", model="mlp:seed", optimizer="adam", impl="foreach", batch_norm="n/a",
                precision="fp32", device="cuda", batch_size=64, compile="off", cuda_graphs="on")
    settings = StepTimeSettings(warmup_s=0.1, duration_s=0.2, min_steps=20)
    record = run_cell(CellJob(run_id="r", cell=cell, repeat=0, device="cuda:0", settings=settings))
    assert record.status == "ok", record.reason
    assert record.phase_time_s is None and record.extra["phase_times"] == PHASES_NOT_SEPARABLE
    assert record.extra["cuda_graph"]["optimizer_capturable"] is True
    assert record.flops_per_step and record.flops_per_step > 0  # counted on the eager step
    assert record.loss_last < record.loss_first
