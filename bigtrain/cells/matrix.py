"""Expanding a SweepSpec into cells, with skip rules decided before any work starts."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bigtrain.cells.axes import AXIS_BY_NAME, AXIS_NAMES, PROGRESS_STYLE, cell_label, record_axis_fields
from bigtrain.cells.spec import SweepSpec
from bigtrain.common.errors import BadInput


PENDING = "pending"
#: A matrix with more axis combinations than this is refused before it is expanded: a few long
#: axis lists multiply into millions of cells (~1 KB each) that would take minutes and gigabytes
#: to build and days to run. The largest shipped preset (`full`) has 1408. `--max-cells` raises it.
DEFAULT_MAX_CELLS = 10_000


class _CellMethods:
    """What a Cell does; its fields are made below from the axis table."""

    def axes(self) -> dict[str, Any]:
        """The axis values, keyed by axis name, in table order."""
        return {name: getattr(self, name) for name in AXIS_NAMES}

    @property
    def label(self) -> str:
        """A compact one-line name for progress bars and tables."""
        return cell_label(self.axes(), PROGRESS_STYLE)


#: One point of the matrix. `status` is pending, skipped or unsupported (with a reason). Its axis
#: fields are made from `bigtrain.axes.AXIS_TABLE` (one per entry, in table order), never written
#: out here.
Cell = dataclasses.make_dataclass(
    "Cell",
    [("cell_id", "str", dataclasses.field()), *record_axis_fields(),
     ("status", "str", dataclasses.field(default=PENDING)),
     ("reason", "str | None", dataclasses.field(default=None))],
    bases=(_CellMethods,),
    namespace={"__doc__": "One point of the matrix. `status` is pending, skipped or unsupported "
                          "(with a reason); the axis fields come from bigtrain.axes.AXIS_TABLE.",
               "__module__": __name__},
    frozen=True,
    kw_only=True,
)


def cell_id_for(axes: dict[str, Any]) -> str:
    """A stable id from the axis values alone: same axes, same id, on any machine and run.

    An axis added after the first runs (`required_in_preset=False`) stays out of the id while it
    has its default value, so a cell that existed before the axis keeps its id.
    """
    identity = {name: value for name, value in axes.items() if not _at_optional_default(name, value)}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def _at_optional_default(name: str, value: Any) -> bool:
    entry = AXIS_BY_NAME.get(name)
    return entry is not None and not entry.required_in_preset and (value,) == entry.default


def cuda_graphs_skip(cuda_graphs: str, device_type: str) -> str | None:
    """Why a cell with `cuda_graphs` on cannot run on `device_type` (None: it can try)."""
    if cuda_graphs == "on" and device_type != "cuda":
        return f"CUDA graphs need a CUDA device; {device_type} cells run eagerly only"
    return None


def converge_unsupported_reason(axes: dict[str, Any]) -> str | None:
    """Why a converge cell with these axes cannot run (no task for its model, a missing extra, a
    captured CUDA graph), or None."""
    from bigtrain.data.tasks import unsupported_reason as task_reason

    if axes.get("cuda_graphs") == "on":
        return ("converge cells run eagerly: a captured CUDA graph replays fixed input tensors, "
                "and the loader hands a new batch every step")
    return task_reason(axes["model"])


def world_size_skip(world_size: int, device: str, cuda_graphs: str,
                    inventory: DeviceInventory) -> str | None:
    """Why a data-parallel cell (`world_size` > 1) cannot run here (None: it can).

    Its ranks run on cuda:0..N-1 (NCCL) or all share the CPU (gloo), so a GPU cell needs N
    visible GPUs and starts at cuda:0."""
    if world_size <= 1:
        return None
    if cuda_graphs == "on":
        return "CUDA graphs are not captured for data-parallel cells (world_size > 1)"
    if device == "cpu":
        return None
    if ":" in device and device != "cuda:0":
        return (f"a world_size {world_size} cell runs its ranks on cuda:0..{world_size - 1}; "
                f"give device cuda (or cuda:0), not {device}")
    if world_size > inventory.cuda_count:
        return (f"world_size {world_size} needs {world_size} GPUs; "
                f"{inventory.cuda_count} CUDA device(s) visible")
    return None


#: What torch 2.13 said when FSDP2's CPUOffloadPolicy was tried on CPU ranks (gloo): the policy
#: copies shards between an accelerator and host memory, and a CPU cell has no accelerator.
FSDP_OFFLOAD_CPU_REASON = ("fsdp-offload moves parameters, gradients and optimizer state from an "
                           "accelerator to host memory; torch's CPUOffloadPolicy on CPU ranks "
                           "fails ('Cannot access accelerator device when none is available'), "
                           "and a CPU cell's parameters live in host memory already")


def lever_problem(spec: SweepSpec) -> str | None:
    """Why the spec's memory-lever axes can give no cell at all (bad input, exit 2), or None:
    fsdp asked for while every cell has world_size 1."""
    sharded = [value for value in spec.parallel if value != "ddp"]
    if sharded and max(spec.world_size) <= 1:
        return (f"parallel {sharded[0]} shards a model over data-parallel ranks, but every cell "
                f"has world_size 1; give --world-size N with N >= 2 (valid range for fsdp: "
                f"world_size >= 2), or parallel ddp")
    return None


def schedule_problem(spec: SweepSpec) -> str | None:
    """Why the spec's schedule axis is bad input (exit 2), or None: a schedule other than constant
    in a step-time spec, whose cells time steps at one lr (a schedule changes no step's cost) and
    have no horizon to schedule over."""
    scheduled = [value for value in spec.schedule if value != "constant"]
    if scheduled and spec.converge is None:
        return (f"schedule {scheduled[0]} sets the lr over a converge run's max_steps; step-time "
                f"cells time steps at one lr, so give it to `bigbench converge` (or a preset "
                f"with a [converge] table); valid schedules here: constant")
    return None


def grad_accum_problem(model: str, batch_size: int, grad_accum: int) -> str | None:
    """Why `grad_accum` micro-batches cannot cut `model`'s batch of `batch_size` (bad input), or
    None."""
    if batch_size % grad_accum == 0:
        return None
    valid = [str(n) for n in range(1, batch_size + 1) if batch_size % n == 0]
    return (f"grad_accum {grad_accum} does not divide batch size {batch_size} of {model} "
            f"(batch_size is the optimizer step's batch, cut into grad_accum equal "
            f"micro-batches); valid grad_accum for it: {', '.join(valid)}")


def lever_skip(axes: dict[str, Any], device_type: str, converge: bool) -> tuple[str, str] | None:
    """(status, reason) of a cell whose lever axes cannot combine with its other axes (None: it
    can run): world_size 1 with fsdp is `skipped` (nothing to shard over); what bigtrain or torch
    cannot do (checkpointing a model without blocks, offload on CPU ranks, accumulation in a
    captured graph or a converge cell) is `unsupported`."""
    from bigtrain.training.levers import checkpointing_unsupported_reason

    parallel = axes["parallel"]
    if parallel != "ddp" and axes["world_size"] <= 1:
        return "skipped", (f"parallel {parallel} shards over data-parallel ranks; a world_size 1 "
                           f"cell has none (its ddp twin is the single-process cell)")
    if parallel == "fsdp-offload" and device_type == "cpu":
        return "unsupported", FSDP_OFFLOAD_CPU_REASON
    if parallel != "ddp" and axes["compile"] == "on":
        return "unsupported", ("FSDP ranks warm up a fixed number of steps (each is a collective), "
                               "too few to keep compilation out of the window; compile off")
    if axes["checkpointing"] == "on" and (reason := checkpointing_unsupported_reason(axes["model"])):
        return "unsupported", reason
    if axes["grad_accum"] > 1:
        if axes["cuda_graphs"] == "on":
            return "unsupported", ("a captured CUDA graph replays one forward and backward; "
                                   "gradient accumulation (grad_accum > 1) runs eagerly only")
        if converge:
            return "unsupported", ("converge cells take one optimizer step per loader batch; "
                                   "grad_accum > 1 is measured by the step-time protocol only")
    return None


@dataclass(frozen=True)
class DeviceInventory:
    """What this machine can run on: CUDA device count and which are bf16-capable."""

    cuda_count: int
    cuda_bf16: tuple[bool, ...] = ()

    @classmethod
    def detect(cls) -> DeviceInventory:
        """Ask torch which CUDA devices are visible."""
        import torch

        if not torch.cuda.is_available():
            return cls(cuda_count=0)
        count = torch.cuda.device_count()
        bf16 = tuple(torch.cuda.get_device_capability(i)[0] >= 8 for i in range(count))
        return cls(cuda_count=count, cuda_bf16=bf16)


def resolve_devices(requested: Sequence[str], inventory: DeviceInventory) -> list[str]:
    """Turn `auto` into `cuda` (cells spread over every visible GPU) or `cpu`."""
    out: list[str] = []
    for device in requested:
        if device == "auto":
            device = "cuda" if inventory.cuda_count else "cpu"
        if device not in out:
            out.append(device)
    return out


def _device_skip(device: str, inventory: DeviceInventory) -> str | None:
    if device == "cpu":
        return None
    if inventory.cuda_count == 0:
        return f"device {device} is not present: no CUDA device is visible"
    if ":" in device and int(device.split(":")[1]) >= inventory.cuda_count:
        return f"device {device} is not present: {inventory.cuda_count} CUDA device(s) visible"
    return None


def matrix_size(spec: SweepSpec) -> int:
    """The number of axis combinations: the product of the axis lengths in `bigtrain.cells.axes`'s
    table. Counted without expanding; an upper bound on the cells (`auto` devices, and models
    without batch-norm slots, fold some combinations together)."""
    return math.prod(len(getattr(spec, name)) for name in AXIS_NAMES)


def check_matrix_size(spec: SweepSpec, max_cells: int = DEFAULT_MAX_CELLS) -> int:
    """The matrix size; BadInput naming the axis lengths and how to raise the limit when it is
    above `max_cells`."""
    size = matrix_size(spec)
    if size > max_cells:
        factors = " x ".join(f"{len(getattr(spec, name))} {name}" for name in AXIS_NAMES)
        raise BadInput(
            f"the matrix has {size:,} cells ({factors}), more than the limit of {max_cells:,}; "
            f"shorten an axis list, or raise the limit with --max-cells {size}"
        )
    return size


def expand(spec: SweepSpec, inventory: DeviceInventory, *,
           max_cells: int = DEFAULT_MAX_CELLS) -> list[Cell]:
    """Every cell of the matrix in a stable order, skipped/unsupported ones included with reasons.

    A model without batch-norm slots runs once with batch_norm "n/a" rather than twice. A matrix
    of more than `max_cells` combinations is refused (BadInput) before anything is built.
    """
    check_matrix_size(spec, max_cells)
    for problem in (lever_problem(spec), schedule_problem(spec)):
        if problem:
            raise BadInput(problem)
    from bigtrain.training.optim import (AUTO, preferred_impl, resolve_optimizer,
                                         unsupported_reason)
    from bigtrain.training.schedules import schedule_skip
    from bigtrain.training.precision import resolve_precision, skip_reason
    from bigtrain.workloads import resolve_model

    cells: list[Cell] = []
    seen: set[str] = set()
    devices = resolve_devices(spec.device, inventory)
    # The product runs over the table's axes in table order (the order cells have always had).
    values = [devices if name == "device" else getattr(spec, name) for name in AXIS_NAMES]
    for combination in itertools.product(*values):
        axes = dict(zip(AXIS_NAMES, combination, strict=True))
        model = resolve_model(axes["model"])
        # Axis values that depend on the model: no BN slots, or the model's own batch size.
        axes["model"] = model.name
        if not model.size.has_batch_norm:
            axes["batch_norm"] = "n/a"
        axes["batch_size"] = axes["batch_size"] or model.size.default_batch_size
        optimizer_spec = resolve_optimizer(axes["optimizer"])
        if axes["impl"] == AUTO:  # the implementation that will run, named in id and record
            axes["impl"] = preferred_impl(optimizer_spec, axes["device"].split(":")[0])
        if problem := grad_accum_problem(model.name, axes["batch_size"], axes["grad_accum"]):
            raise BadInput(problem)
        cell_id = cell_id_for(axes)
        if cell_id in seen:
            continue
        seen.add(cell_id)
        impl, precision, device = axes["impl"], axes["precision"], axes["device"]
        device_type = device.split(":")[0]
        status, reason = PENDING, None
        device_reason = _device_skip(device, inventory)
        recipe = resolve_precision(precision)
        if device_reason:
            status, reason = "skipped", device_reason
        elif precision_reason := skip_reason(recipe, device_type, _bf16(device, inventory)):
            status, reason = "skipped", precision_reason
        elif axes["framework"] != "torch":  # its backend decides; torch's own rules do not apply
            if framework_reason := framework_skip(axes, cell_id, spec.converge is not None):
                status, reason = "unsupported", framework_reason
        elif graphs_reason := cuda_graphs_skip(axes["cuda_graphs"], device_type):
            status, reason = "skipped", graphs_reason
        elif ws_reason := world_size_skip(axes["world_size"], device, axes["cuda_graphs"],
                                          inventory):
            status, reason = "skipped", ws_reason
        elif lever := lever_skip(axes, device_type, spec.converge is not None):
            status, reason = lever
        elif impl_reason := unsupported_reason(optimizer_spec, impl, device_type):
            status, reason = "unsupported", impl_reason
        elif spec.converge is not None and (task_reason := converge_unsupported_reason(axes)):
            status, reason = "unsupported", task_reason
        elif scheduled := schedule_skip(optimizer_spec, impl, axes["schedule"]):
            status, reason = scheduled
        cells.append(Cell(cell_id=cell_id, status=status, reason=reason, **axes))
    return _mark_incapable(cells)


def framework_skip(axes: dict[str, Any], cell_id: str, converge: bool) -> str | None:
    """Why a cell of a non-torch framework cannot run (its package missing, with the install
    line; a family, size or axis value its backend has no counterpart for), or None."""
    from bigtrain.frameworks import framework_cell_reason

    if converge:
        return (f"converge cells train on torch data loaders; {axes['framework']} cells are "
                f"measured by the step-time protocol only")
    return framework_cell_reason(Cell(cell_id=cell_id, **axes))


def _mark_incapable(cells: list[Cell]) -> list[Cell]:
    """Mark `unsupported` the pending CPU cells whose model this torch cannot train in their
    precision on this CPU (`bigtrain.workloads.capability`: probed once per machine, cached)."""
    from bigtrain.training.precision import resolve_precision
    from bigtrain.workloads.capability import ProbeKey, unsupported_reasons

    def key(cell: Cell) -> ProbeKey | None:
        if (cell.status != PENDING or cell.device != "cpu" or cell.framework != "torch"
                or resolve_precision(cell.precision).autocast_dtype is None):
            return None
        return ProbeKey(cell.model, cell.batch_norm == "on", cell.precision)

    keys = {cell.cell_id: k for cell in cells if (k := key(cell)) is not None}
    reasons = unsupported_reasons(keys.values())
    return [dataclasses.replace(cell, status="unsupported", reason=reasons[keys[cell.cell_id]])
            if cell.cell_id in keys and keys[cell.cell_id] in reasons else cell
            for cell in cells]


def _bf16(device: str, inventory: DeviceInventory) -> bool:
    """bf16 capability of a device; `cuda` (any GPU) needs every visible GPU to be capable."""
    if device == "cpu":
        return True
    if ":" in device:
        return inventory.cuda_bf16[int(device.split(":")[1])]
    return all(inventory.cuda_bf16)
