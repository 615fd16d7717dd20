"""Building a cell for measurement: device, backend switches, workload, optimizer, training step.

Everything a protocol needs to run, and everything the record needs to say about how the cell was
set up (cuDNN autotuning, host syncs the recipe adds, compilation), in one frozen value.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any

import torch

from bigtrain.training.compiling import compile_model, compiled_graph_count
from bigtrain.training.levers import enable_checkpointing
from bigtrain.measure.contract import BuiltCell
from bigtrain.measure.step_loop import TrainingStep
from bigtrain.training.optim import build_optimizer, resolve_optimizer
from bigtrain.training.precision import resolve_precision
from bigtrain.training.schedules import set_group_lr
from bigtrain.workloads import resolve_model


def select_device(device_spec: str) -> torch.device:
    """The cell's device, made current (before anything touches CUDA, so that no context is
    created on another GPU)."""
    device = torch.device(device_spec)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def build_cell(cell: Any, device: torch.device, seed: int,
               prepare_model: Callable[[torch.nn.Module], dict[str, Any]] | None = None,
               ) -> BuiltCell:
    """Set the backend switches for `cell` and build its workload, optimizer and training step
    on `device` (made current by `select_device`).

    Activation checkpointing (the `checkpointing` axis) is switched on before anything else
    touches the model; `prepare_model` (a data-parallel rank's FSDP sharding) runs next, in place,
    before compilation and before the optimizer is built, so the optimizer holds the sharded
    parameters; its notes go into the record. The `grad_accum` axis sets the step's
    micro-batches."""
    recipe = resolve_precision(cell.precision)
    recipe.apply_backend_flags()

    model_ref = resolve_model(cell.model)
    workload = model_ref.family.build(
        model_ref.size.name,
        batch_size=cell.batch_size,
        batch_norm=cell.batch_norm == "on",
        device=device,
        seed=seed,
    )
    lever_notes: dict[str, Any] = {}
    if getattr(cell, "checkpointing", "off") == "on":
        lever_notes.update(enable_checkpointing(workload.model))
    if prepare_model is not None:
        lever_notes.update(prepare_model(workload.model))
    cudnn_benchmark = set_cudnn_benchmark(workload.model, device)
    if cell.compile == "on":
        workload.model = compile_model(workload.model)
    workload.model.train()
    param_count = sum(p.numel() for p in workload.model.parameters())
    optimizer_spec = resolve_optimizer(cell.optimizer)
    optimizer, optimizer_step = build_optimizer(
        optimizer_spec, cell.impl, workload.model  # Muon splits by module
    )
    lr_used = set_learning_rate(optimizer, getattr(cell, "lr", "default"))
    step: Any = TrainingStep(workload, optimizer, optimizer_step, recipe, device,
                             micro_batches=getattr(cell, "grad_accum", 1))
    # torchao's 8-bit AdamW compiles its own step whatever the impl: watch dynamo for it too.
    compiles = cell.compile == "on" or cell.impl == "compiled" or optimizer_spec.compiles_itself

    syncs, sync_reason = recipe.host_syncs(cell.impl)
    notes: dict[str, Any] = {**workload.notes, **lever_notes, "cudnn_benchmark": cudnn_benchmark,
                             "host_syncs_per_step": syncs}
    if sync_reason:
        notes["host_sync_reason"] = sync_reason
    if getattr(cell, "cuda_graphs", "off") == "on":
        from bigtrain.measure.cuda_graphs import capture_training_step

        step, graph_notes = capture_training_step(step, device)  # CellSkipped when it cannot
        notes.update(graph_notes)
    return BuiltCell(
        workload=workload,
        optimizer=optimizer,
        step=step,
        device=device,
        device_name=device_name(device),
        param_count=param_count,
        compile_probe=compiled_graph_count if compiles else None,
        notes=notes,
        model_name=model_ref.name,
        batch_size=cell.batch_size,
        seed=seed,
        lr_used=lr_used,
        schedule=getattr(cell, "schedule", "constant"),
    )


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: str) -> float | None:
    """Apply the `lr` axis value (canonical text, or `default`: the optimizer registry's own lr,
    see `bigtrain.training.optim.OPTIMIZERS`) before the first step; returns the lr in force."""
    if lr != "default":
        for group in optimizer.param_groups:
            set_group_lr(group, float(lr))
    value = optimizer.param_groups[0].get("lr")
    return float(value) if value is not None else None


def has_convolutions(model: torch.nn.Module) -> bool:
    """True when the model holds a convolution layer."""
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in model.modules())


def set_cudnn_benchmark(model: torch.nn.Module, device: torch.device) -> bool:
    """Let cuDNN autotune convolutions for a conv model on CUDA, as real conv training does; set it
    off explicitly otherwise, so a reused worker never carries it over from an earlier cell.

    Autotuning happens on the first step of each shape, which warm-up runs before the window.
    Returns the value set.
    """
    enabled = device.type == "cuda" and has_convolutions(model)
    torch.backends.cudnn.benchmark = enabled
    return enabled


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from bigtrain.measure.envinfo import cpu_model

    return cpu_model() or platform.processor() or "CPU"
