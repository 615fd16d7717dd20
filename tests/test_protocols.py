"""The measuring seam: one settings object from the spec to the loop, the step-time protocol as a
registry entry, the record built from build + protocol result, and issue 9's corrections."""

from __future__ import annotations

import time
import types

import pytest
import torch

from bigtrain.common.errors import BadInput
from bigtrain.cells.matrix import Cell
from bigtrain.measure import step_loop
from bigtrain.measure.protocols import (
    PROTOCOLS,
    STEP_TIME,
    StepTimeProtocol,
    resolve_protocol,
)
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.measure.step_loop import measure_window, warm_up
from bigtrain.training.precision import resolve_precision
from bigtrain.run.build import has_convolutions, set_cudnn_benchmark
from bigtrain.run.cell import run_cell
from bigtrain.run.job import CellJob
from bigtrain.run.sweep import plan_jobs
from bigtrain.cells.spec import MeasureSettings

SETTINGS = StepTimeSettings(warmup_s=0.01, duration_s=0.02, min_steps=3)


def _cell(model: str = "mlp:seed", **axes) -> Cell:
    values = {"cell_id": "c1", "model": model, "optimizer": "sgd", "impl": "foreach",
              "batch_norm": "off", "precision": "fp32", "device": "cpu", "batch_size": 8,
              "compile": "off", **axes}
    return Cell(**values)


# -- settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [("warmup_s", -1.0), ("duration_s", 0.0),
                                          ("min_steps", 0), ("min_steps", 2.5)])
def test_settings_validate_on_construction_and_name_the_field(field, value):
    values = {"warmup_s": 0.1, "duration_s": 1.0, "min_steps": 3, field: value}
    with pytest.raises(BadInput, match=field):
        StepTimeSettings(**values)


def test_plan_jobs_passes_one_settings_object_from_the_spec():
    from bigtrain.cells.spec import SweepSpec

    spec = SweepSpec(preset="t", model=("mlp:seed",), optimizer=("sgd",), impl=("foreach",),
                     batch_norm=("off",), precision=("fp32",), device=("cpu",), batch_size=(8,),
                     compile=("off",),
                     measure=MeasureSettings(warmup_s=0.5, duration_s=2.0, min_steps=7, repeats=2))
    rounds = plan_jobs("run", spec, [_cell(), _cell(cell_id="c2")], done=set())
    jobs = [job for round_ in rounds for job in round_]
    assert len(jobs) == 4
    assert jobs[0].settings == StepTimeSettings(warmup_s=0.5, duration_s=2.0, min_steps=7)
    assert all(job.settings is jobs[0].settings for job in jobs)  # built once, not copied
    assert all(job.protocol == STEP_TIME for job in jobs)


def test_step_time_is_a_registered_protocol():
    assert isinstance(PROTOCOLS.get(STEP_TIME), StepTimeProtocol)
    assert resolve_protocol(STEP_TIME).settings_type is StepTimeSettings
    with pytest.raises(BadInput, match="step_time"):
        resolve_protocol("time_to_target")


# -- a real cell, end to end ---------------------------------------------------------------------
def test_cell_record_from_build_protocol_and_flops():
    record = run_cell(CellJob(run_id="r", cell=_cell(), repeat=0, device="cpu", settings=SETTINGS))
    assert record.status == "ok", record.reason
    assert record.step_time_s.n == len(record.step_times_s) >= SETTINGS.min_steps
    assert record.items_per_s == pytest.approx(record.items_per_step / record.step_time_s.median)
    assert record.flops_per_step and record.flops_per_step > 0
    assert record.extra["warmup_settled"] in (True, False)
    assert record.extra["cudnn_benchmark"] is False  # no convolutions, no CUDA
    assert record.extra["host_syncs_per_step"] == 0
    assert "unmasked" in record.extra["flops_convention"]
    assert "compile" not in record.extra  # nothing compiled, nothing watched


def test_a_failing_build_is_an_error_record_not_a_crash():
    record = run_cell(CellJob(run_id="r", cell=_cell(optimizer="no-such"), repeat=0, device="cpu",
                              settings=SETTINGS))
    assert record.status == "error"
    assert "no-such" in record.reason


# -- issue 9a: CUDA events are made before the window --------------------------------------------
class _FakeEvent:
    """A CUDA event as c10 makes it: the real event is created at the first record()."""

    log: list[str] = []
    window_open = False

    def __init__(self, enable_timing: bool = False) -> None:
        self.created = False
        self.t = None

    def record(self) -> None:
        if not self.created:
            self.created = True
            _FakeEvent.log.append("create-in-window" if _FakeEvent.window_open else "create")
        _FakeEvent.log.append("record-in-window" if _FakeEvent.window_open else "record")
        self.t = time.perf_counter()

    def elapsed_time(self, other: _FakeEvent) -> float:
        return (other.t - self.t) * 1000.0


@pytest.fixture
def fake_cuda(monkeypatch):
    _FakeEvent.log = []
    _FakeEvent.window_open = False
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    return _FakeEvent


def _step(mark=lambda: None) -> torch.Tensor:
    mark()
    mark()
    return torch.zeros(())


def test_window_only_records_events_made_before_it(fake_cuda):
    settings = StepTimeSettings(warmup_s=0.0, duration_s=1e-9, min_steps=5)

    def opened() -> None:
        fake_cuda.window_open = True

    window = measure_window(_step, torch.device("cuda"), settings, on_window_open=opened,
                            expected_step_s=1.0)
    log = fake_cuda.log
    assert "create-in-window" not in log
    assert log.count("record-in-window") == 3 * 5 + 1
    assert log.count("create") == 3 * 5 + 1  # every event of the window was made before it
    assert len(window.step_times_s) == 5
    assert window.clock_events_made_in_window == 0


def test_events_beyond_the_reserve_are_counted(fake_cuda, monkeypatch):
    ticks = iter(range(1_000_000))
    # a clock that moves 1 s per reading: the window's length in steps is exact
    monkeypatch.setattr(step_loop, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    settings = StepTimeSettings(warmup_s=0.0, duration_s=10.0, min_steps=1)
    window = measure_window(_step, torch.device("cuda"), settings,
                            on_window_open=lambda: setattr(fake_cuda, "window_open", True),
                            expected_step_s=5.0)  # warm-up predicted 2 steps: 7 events made
    steps = len(window.step_times_s)
    assert steps == 10
    made = fake_cuda.log.count("create-in-window")
    assert made == (3 * steps + 1) - (3 * 2 + 1)
    assert window.clock_events_made_in_window == made


# -- issue 9b: cudnn.benchmark -------------------------------------------------------------------
def test_cudnn_benchmark_only_for_conv_models_on_cuda(monkeypatch):
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    dense = torch.nn.Linear(3, 4)
    assert has_convolutions(conv) and not has_convolutions(dense)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    assert set_cudnn_benchmark(conv, torch.device("cuda")) is True
    assert torch.backends.cudnn.benchmark is True
    # a reused worker: the next cell sets it back explicitly
    assert set_cudnn_benchmark(dense, torch.device("cuda")) is False
    assert torch.backends.cudnn.benchmark is False
    assert set_cudnn_benchmark(conv, torch.device("cpu")) is False


# -- issue 9d: fp16's host sync is recorded ------------------------------------------------------
def test_fp16_host_sync_is_declared_for_non_fused_optimizers():
    fp16 = resolve_precision("fp16")
    for impl in ("forloop", "foreach", "compiled"):
        syncs, reason = fp16.host_syncs(impl)
        assert syncs == 1 and "found_inf" in reason
    assert fp16.host_syncs("fused") == (0, None)
    assert resolve_precision("bf16").host_syncs("foreach") == (0, None)
    assert resolve_precision("fp32").host_syncs("forloop") == (0, None)


# -- issue 9c: compilation stays out of the window -----------------------------------------------
class _CompilingStep:
    """A step whose 1st and 3rd calls compile a graph (as a recompilation on a later step does)."""

    def __init__(self, compiling_calls: set[int]) -> None:
        self.calls = 0
        self.graphs = 0
        self.compiling_calls = compiling_calls

    def __call__(self, mark=lambda: None) -> torch.Tensor:
        self.calls += 1
        if self.calls in self.compiling_calls:
            self.graphs += 1
        mark()
        mark()
        return torch.ones(())


def test_warm_up_ends_only_after_steps_that_compiled_nothing():
    step = _CompilingStep({1, 3})
    warm = warm_up(step, torch.device("cpu"), budget_s=0.0, compile_probe=lambda: step.graphs)
    assert warm.compile.graphs == 2
    assert warm.compile.compiling_steps == 2
    # step 3 compiled, then two quiet steps (4 and 5) before the window may open
    assert warm.steps == step.calls >= 5
    assert not warm.compile.still_compiling_at_end


def test_warm_up_without_a_probe_is_unchanged():
    step = _CompilingStep(set())
    warm = warm_up(step, torch.device("cpu"), budget_s=0.0)
    assert warm.compile is None
    assert warm.steps == 2  # the first step and one timed one, as before


@pytest.mark.slow
def test_compiled_cell_keeps_compilation_out_of_the_window():
    cell = _cell(impl="compiled", optimizer="adam")
    record = run_cell(CellJob(run_id="r", cell=cell, repeat=0, device="cpu", settings=SETTINGS))
    assert record.status == "ok", record.reason
    compile_notes = record.extra["compile"]
    assert compile_notes["graphs"] >= 1
    assert compile_notes["compiling_steps"] >= 1
    assert compile_notes["still_compiling_at_end"] is False


@pytest.mark.slow
def test_a_reused_worker_keeps_compiling_new_optimizers():
    """dynamo guards a compiled step on the optimizer object; past its recompile limit it would
    run the step eagerly. Every new compiled optimizer must still compile a graph."""
    from bigtrain.training.compiling import compiled_graph_count
    from bigtrain.training.optim import build_optimizer, resolve_optimizer

    limit = torch._dynamo.config.recompile_limit
    for _ in range(limit + 2):
        layer = torch.nn.Linear(4, 2)
        optimizer, step = build_optimizer(resolve_optimizer("adam"), "compiled", layer.parameters())
        before = compiled_graph_count()
        layer(torch.ones(1, 4)).sum().backward()
        step()
        assert compiled_graph_count() > before
