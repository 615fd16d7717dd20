"""Is this worker process still fit to run the next cell after one failed in Python?

Starting a worker costs seconds (the torch import, and on a GPU ~12 s of CUDA initialization), so
a worker whose cell raised (error, oom) or diverged is kept, but only when its device still works:
on CUDA a synchronize and a tiny allocation and kernel must succeed (a sticky CUDA error, such as
an illegal memory access, makes every later CUDA call fail, so these catch it); on the CPU the
process is healthy once the failed cell's garbage is collected. Deaths and timeouts never get here:
those workers are gone.

`mark_unhealthy` lets code inside the worker (a workload plugin that knows it corrupted process
state; the tests' fault workloads, standing in for a CUDA fault on a machine without a GPU) say
that the process must not be reused, whatever the probe finds.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class WorkerHealth:
    """What the worker reports after a failed cell: keep me, or replace me and why."""

    healthy: bool
    reason: str | None = None


_marked_unhealthy: str | None = None


def mark_unhealthy(reason: str) -> None:
    """Declare this process unfit for another cell; the next health check reports `reason`."""
    global _marked_unhealthy
    _marked_unhealthy = reason


def check_health(device: str) -> WorkerHealth:
    """Free what the failed cell left behind and probe `device` ("cpu" or "cuda:N")."""
    # The failed cell's tensors may sit in reference cycles through its traceback's frames.
    gc.collect()
    if _marked_unhealthy is not None:
        return WorkerHealth(healthy=False, reason=_marked_unhealthy)
    if device.startswith("cuda"):
        return _check_cuda(device)
    return WorkerHealth(healthy=True)


def _check_cuda(device: str) -> WorkerHealth:
    import torch

    if not torch.cuda.is_initialized():
        return WorkerHealth(healthy=True)  # the cell failed before touching the GPU
    try:
        torch.cuda.synchronize(device)
        probe = torch.ones(1, device=device)
        probe += 1
        if probe.item() != 2.0:  # .item() synchronizes: the kernel ran, or raised
            return WorkerHealth(healthy=False, reason="CUDA probe computed a wrong value")
        del probe
        # An OOM leaves the caching allocator full of the failed cell's blocks: hand them back.
        torch.cuda.empty_cache()
    except Exception as exc:  # any CUDA error here means the context cannot be trusted
        first_line = (str(exc).strip().splitlines() or [""])[0]
        return WorkerHealth(healthy=False,
                            reason=f"CUDA unusable after the failure: {type(exc).__name__}: "
                                   f"{first_line}"[:500])
    return WorkerHealth(healthy=True)
