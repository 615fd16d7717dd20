"""The whole training step captured as one CUDA graph, replayed in place of the eager step.

For a launch-bound step (a small model: many tiny kernels) the host's time to launch each kernel
is the step time; a replayed graph launches all of them with one call. Capture follows PyTorch's
whole-network recipe:

- the inputs are static: a workload's batch is one fixed set of tensors reused every step;
- a few eager steps run first on a side stream, so that everything done lazily on a first step
  (optimizer state, cuBLAS workspaces, cuDNN autotuning, compilation) happens outside the capture;
- the optimizer is made capturable (its step counter lives on the device, no host reads), and
  gradients are set to None, so the captured backward allocates them from the graph's own pool;
- autocast runs without its cast cache, whose cached copies would be freed under the graph.

A cell whose step cannot be captured is not an error of the benchmark: `CellSkipped` says why, and
the worker records the cell as `skipped` with that reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from bigtrain.measure.protocols import CellSkipped
from bigtrain.measure.step_loop import TrainingStep

#: Eager steps on the side stream before the capture (PyTorch's recipe uses a few).
CAPTURE_WARMUP_STEPS = 3


class GraphedStep:
    """A captured training step: each call replays the graph and returns the static loss tensor
    (overwritten by every replay). `eager_step` is the step it was captured from (FLOP counting
    runs that one: a replay dispatches no operators to count)."""

    #: One replay is one unit on the device: the window times it whole.
    separable_phases = False

    def __init__(self, graph: torch.cuda.CUDAGraph, static_loss: torch.Tensor,
                 eager_step: TrainingStep) -> None:
        self.graph = graph
        self.static_loss = static_loss
        self.eager_step = eager_step
        self.workload = eager_step.workload
        self.optimizer = eager_step.optimizer

    def __call__(self, mark: Callable[[], None] = lambda: None) -> torch.Tensor:
        """Replay the captured step; `mark` is accepted for the loop's sake and not called."""
        self.graph.replay()
        return self.static_loss


def capture_refusal(step: TrainingStep, device: torch.device) -> str | None:
    """Why `step` cannot be captured on `device`, known before trying (None: try it)."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device; {device.type} cells run eagerly only"
    if step.scaler is not None:
        return ("CUDA graphs: fp16's GradScaler reads the found-inf flag on the host each step, "
                "which a captured graph cannot do")
    return None


def make_capturable(optimizer: torch.optim.Optimizer) -> bool:
    """Switch every parameter group that has the option to `capturable=True` (its step counter
    then lives on the device); False when the optimizer has no such option (SGD needs none)."""
    found = False
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True
            found = True
    return found


def capture_training_step(step: TrainingStep, device: torch.device) -> tuple[GraphedStep, dict]:
    """Warm `step` up on a side stream, capture one step as a CUDA graph and check it replays.

    Returns the graphed step and notes for the record. Raises CellSkipped when the step cannot be
    captured (with the reason), and lets out-of-memory through (an `oom` record, not a skip).
    """
    refusal = capture_refusal(step, device)
    if refusal:
        raise CellSkipped(refusal)
    capturable = make_capturable(step.optimizer)
    step.autocast = _without_cast_cache(step.autocast)
    try:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(CAPTURE_WARMUP_STEPS):
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        step.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_loss = step()
        graph.replay()  # a graph that captured but cannot replay fails here, not in the window
        torch.cuda.synchronize(device)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:  # the step does something a graph cannot hold (a host sync, ...)
        message = str(exc).strip().splitlines()
        raise CellSkipped(f"CUDA graph capture failed: {type(exc).__name__}: "
                          f"{message[0] if message else ''}"[:500]) from exc
    notes = {"cuda_graph": {"capture_warmup_steps": CAPTURE_WARMUP_STEPS,
                            "optimizer_capturable": capturable}}
    return GraphedStep(graph, static_loss, step), notes


def _without_cast_cache(
        autocast: Callable[[], contextlib.AbstractContextManager]
) -> Callable[[], contextlib.AbstractContextManager]:
    """The same autocast context with the cast cache off (PyTorch's advice for capture)."""
    @contextlib.contextmanager
    def uncached() -> Iterator[Any]:
        with autocast() as entered:
            previous = torch.is_autocast_cache_enabled()
            torch.set_autocast_cache_enabled(False)
            try:
                yield entered
            finally:
                torch.set_autocast_cache_enabled(previous)

    return uncached
