"""Issue 26, the levers in the training step: checkpoint wrappers sit on every block and really
recompute in the backward pass, gradients are the same with and without checkpointing, grad_accum
k gives the gradients of the whole batch in k micro-batches with 2k+1 phase marks per step, and a
measured cell carries the lever fields. Plumbing and exact arithmetic only: nothing here depends on
how fast anything ran."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bigtrain.cells.matrix import DeviceInventory, expand
from bigtrain.cells.settings import StepTimeSettings
from bigtrain.cells.spec import spec_from_preset
from bigtrain.measure.step_loop import TrainingStep, measure_window, micro_batch_slices
from bigtrain.training.levers import (
    CHECKPOINT_ATTR,
    checkpointed_blocks,
    checkpointing_paused,
    enable_checkpointing,
    model_blocks,
)
from bigtrain.training.precision import resolve_precision
from bigtrain.workloads import resolve_model

CPU = torch.device("cpu")


def _workload(name: str, batch_size: int | None = None):
    ref = resolve_model(name)
    return ref.family.build(ref.size.name, batch_size=batch_size, device=CPU, seed=0)


def _gradients(workload, micro_batches: int = 1) -> list[torch.Tensor]:
    """The gradients one training step hands its optimizer (captured at the optimizer step)."""
    captured: list[list[torch.Tensor]] = []
    params = [p for p in workload.model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0)

    def optimizer_step() -> None:
        captured.append([p.grad.detach().clone() for p in params])

    step = TrainingStep(workload, optimizer, optimizer_step, resolve_precision("fp32"), CPU,
                        micro_batches=micro_batches)
    step()
    return captured[0]


def _forward_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("model, blocks", [("transformer:tiny", 2), ("cnn:tiny", 2),
                                           ("rnn:lstm-tiny", 1)])
def test_checkpoint_wrappers_sit_on_every_block_and_recompute_in_backward(model: str,
                                                                           blocks: int) -> None:
    workload = _workload(model)
    notes = enable_checkpointing(workload.model)
    wrapped = checkpointed_blocks(workload.model)
    assert notes["checkpointed_blocks"] == len(wrapped) == blocks
    assert wrapped == model_blocks(workload.model)
    # Count the first block's own forward, which the wrapper runs (and checkpoint re-runs).
    wrapper = getattr(wrapped[0], CHECKPOINT_ATTR)
    calls, original = [0], wrapper.forward

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    wrapper.forward = counted
    workload.forward_loss().backward()
    assert calls[0] == 2  # once in the forward, once more when backward recomputes it
    with checkpointing_paused(workload.model):
        workload.forward_loss().backward()
    assert calls[0] == 3  # paused: the forward's activations are kept, nothing recomputed


def test_gradients_are_the_same_with_and_without_checkpointing() -> None:
    plain, checkpointed = _workload("transformer:tiny"), _workload("transformer:tiny")
    enable_checkpointing(checkpointed.model)
    for a, b in zip(_gradients(plain), _gradients(checkpointed), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_hf_models_switch_on_their_own_gradient_checkpointing() -> None:
    pytest.importorskip("transformers")
    plain, checkpointed = _workload("hf:llama-tiny"), _workload("hf:llama-tiny")
    notes = enable_checkpointing(checkpointed.model)
    assert checkpointed.model.is_activation_checkpointing
    assert notes["checkpointed_blocks"] == 2  # the two decoder layers
    for a, b in zip(_gradients(plain), _gradients(checkpointed), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    with checkpointing_paused(checkpointed.model):
        assert not checkpointed.model.is_activation_checkpointing
    assert checkpointed.model.is_activation_checkpointing


def test_grad_accum_4_gives_the_gradients_of_the_whole_batch() -> None:
    whole = _gradients(_workload("transformer:tiny", batch_size=8), micro_batches=1)
    accumulated = _gradients(_workload("transformer:tiny", batch_size=8), micro_batches=4)
    for a, b in zip(whole, accumulated, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_grad_accum_runs_k_micro_batches_with_2k_plus_1_marks_and_restores_the_batch() -> None:
    workload = _workload("mlp:seed", batch_size=12)
    slices = micro_batch_slices(workload, 3)
    assert [tuple(x.shape) for x, _ in slices] == [(4, 10)] * 3
    assert torch.equal(torch.cat([x for x, _ in slices]), workload.inputs)
    with pytest.raises(ValueError, match="does not divide the batch of 12"):
        micro_batch_slices(workload, 5)
    optimizer = torch.optim.SGD(workload.model.parameters(), lr=0.01)
    step = TrainingStep(workload, optimizer, optimizer.step, resolve_precision("fp32"), CPU,
                        micro_batches=3)
    calls = _forward_calls(workload.model)
    marks = [0]
    step(lambda: marks.__setitem__(0, marks[0] + 1))
    assert (calls[0], marks[0]) == (3, 6)
    assert workload.inputs.shape[0] == 12  # the whole batch is back after the step
    window = measure_window(step, CPU, StepTimeSettings(warmup_s=0, duration_s=1e-9, min_steps=4))
    assert len(window.step_times_s) == len(window.forward_s) == len(window.optimizer_s) == 4
    for total, f, b, o in zip(window.step_times_s, window.forward_s, window.backward_s,
                              window.optimizer_s):
        assert total == pytest.approx(f + b + o)


def test_a_checkpointed_accumulating_cell_records_the_lever_fields() -> None:
    from bigtrain.run.cell import run_cell
    from bigtrain.run.job import CellJob

    spec = spec_from_preset("ci", {"model": "transformer:tiny", "optimizer": "sgd",
                                   "precision": "fp32", "device": "cpu", "checkpointing": "on",
                                   "grad_accum": "2", "batch_size": "4"})
    [cell] = expand(spec, DeviceInventory(cuda_count=0))
    job = CellJob(run_id="levers", cell=cell, repeat=0, device="cpu",
                  settings=StepTimeSettings(warmup_s=0.02, duration_s=0.05, min_steps=3))
    record = run_cell(job)
    assert record.status == "ok", (record.reason, record.traceback_tail)
    assert (record.checkpointing, record.grad_accum, record.batch_size) == ("on", 2, 4)
    assert record.micro_batch_size == 2 and record.samples_per_optimizer_step == 4
    assert record.samples_per_s == pytest.approx(4 / record.step_time_s.median)
    assert record.peak_memory_per_sample_bytes == pytest.approx(record.peak_rss_bytes / 4)
    assert record.recompute_share_pct is not None and record.recompute_share_pct >= 0
    extra = record.extra
    assert extra["checkpointed_blocks"] == 2 and extra["no_checkpoint_step_time_s"] > 0
    rise = record.phase_time_s.backward - extra["no_checkpoint_backward_s"]
    assert record.recompute_share_pct == pytest.approx(
        100 * max(0.0, rise) / record.step_time_s.median)
    assert dataclasses.replace(record).rank_peak_mem_bytes is None  # one process: no ranks
