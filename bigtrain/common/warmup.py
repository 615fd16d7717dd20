"""The warm-up rule every step loop follows (torch's, and the JAX and TensorFlow backends'): run
steps until the warm-up budget is spent and step time has settled, or until a cap. Pure, so a
framework backend shares it without reaching into the torch measuring code."""

from __future__ import annotations

import statistics

#: Step time has settled when the median of the last k steps is within this of the k before.
SETTLE_TOLERANCE = 0.10
#: Warm-up stops at this multiple of its budget even when step time has not settled.
WARMUP_CAP_FACTOR = 3.0
#: Warm-up steps whatever the budget says.
MIN_WARMUP_STEPS = 2


def settled(times: list[float]) -> bool:
    """True when the median of the last k steps is within tolerance of the k before them."""
    k = min(5, len(times) // 2)
    if k == 0:
        return False
    recent = statistics.median(times[-k:])
    before = statistics.median(times[-2 * k:-k])
    return abs(recent - before) <= SETTLE_TOLERANCE * before
