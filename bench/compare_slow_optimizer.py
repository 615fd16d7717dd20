"""Test-only plugin: make the optimizer step a known fraction slower, for compare's detection benchmark.

Loaded into every worker through `BIGTRAIN_PLUGINS=compare_slow_optimizer` (with `bench/` on
PYTHONPATH); never part of the product. It re-registers the named optimizers under their own names,
so a slowed-down run has the same cell ids as a normal one and `bigbench compare` matches them.

    BIGTRAIN_SLOWDOWN_PCT=10          how much slower each optimizer step is, in percent
    BIGTRAIN_SLOWDOWN_OPTIMIZERS=adam which optimizers to slow (comma-separated; default: all)

After the real `step()` returns, the step busy-waits for SLOWDOWN_PCT percent of the time the real
step took, so the slowdown scales with the step instead of being a fixed sleep. (CPU timing: the
real step has finished when `step()` returns; on a GPU this would only slow the kernel launches.)
"""

from __future__ import annotations

import dataclasses
import os
import time

from bigtrain.training.optim import OPTIMIZERS, register_optimizer

SLOWDOWN_ENV = "BIGTRAIN_SLOWDOWN_PCT"
OPTIMIZERS_ENV = "BIGTRAIN_SLOWDOWN_OPTIMIZERS"


def slowed(cls: type, fraction: float) -> type:
    """A subclass of optimizer class `cls` whose step takes (1 + fraction) times as long."""

    def step(self, closure=None):  # noqa: ANN001, ANN202 - torch's signature
        start = time.perf_counter()
        result = cls.step(self, closure)
        until = start + (time.perf_counter() - start) * (1.0 + fraction)
        while time.perf_counter() < until:
            pass
        return result

    return type(f"Slowed{cls.__name__}", (cls,), {"step": step, "__module__": __name__})


def _install() -> None:
    pct = float(os.environ.get(SLOWDOWN_ENV, "0") or 0)
    if pct <= 0:
        return
    wanted = {n.strip() for n in os.environ.get(OPTIMIZERS_ENV, "").split(",") if n.strip()}
    # Read the product's entries without triggering plugin loading again (we are inside it).
    for name, spec in list(OPTIMIZERS._items.items()):  # noqa: SLF001 - test-only plugin
        if wanted and name not in wanted:
            continue
        register_optimizer(
            dataclasses.replace(spec, cls=slowed(spec.cls, pct / 100.0),
                                description=f"{spec.description} (+{pct:g}% injected)"),
            replace=True,
        )


_install()
