"""torch.compile in a worker that runs many cells.

Dynamo keeps compiled code per Python code object, guarded on what it saw. A compiled optimizer
step is guarded on the optimizer object's identity, so every cell's new optimizer is one more
recompilation of the same code (cheap: inductor's graph cache still hits), and a compiled model is
reused by a later cell of the same class and shapes. At dynamo's recompile limit (8 per code object
by default) dynamo silently runs the code eagerly, so after eight compiled cells a reused worker
would measure "compiled" cells that are not compiled. `make_room_for_compilation` resets dynamo
before that can happen; between resets, compiled artefacts are reused where torch allows.
"""

from __future__ import annotations

from typing import Any

#: Compiled builds between dynamo resets. Each build adds at most two cache entries per code object
#: (a static and then a dynamic-shape compilation), so half the default limit of 8 stays clear.
BUILDS_PER_RESET = 4

_builds_since_reset = 0


def make_room_for_compilation() -> bool:
    """Call before each torch.compile of a cell; resets dynamo every BUILDS_PER_RESET calls.

    Returns True when it reset (the cell's record notes it: its compilation started cold).
    """
    global _builds_since_reset
    reset = False
    if _builds_since_reset >= BUILDS_PER_RESET:
        import torch._dynamo

        torch._dynamo.reset()
        _builds_since_reset = 0
        reset = True
    _builds_since_reset += 1
    return reset


def compiled_graph_count() -> int:
    """Graphs dynamo has compiled in this process so far (it only grows, resets included)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def compile_model(model: Any) -> Any:
    """`torch.compile(model)` after making room in dynamo's caches."""
    import torch

    make_room_for_compilation()
    return torch.compile(model)
