"""The plan of an A/B run: the seeded order of each round, which core each side runs on, and
whether one more round fits the budget. Pure functions, tested with exact values."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

from bigtrain.ab.sides import BASELINE, CANDIDATE
from bigtrain.common.errors import BadInput

INTERLEAVE = "interleave"
DUET = "duet"
MODES = (INTERLEAVE, DUET)


@dataclass(frozen=True, kw_only=True)
class Slot:
    """One cell of one round, for one side (`side`), or for both at once in duet (`side` None)."""

    position: int
    cell_id: str
    side: str | None


def round_order(cell_ids: Sequence[str], round_index: int, seed: int, mode: str) -> list[Slot]:
    """The order of round `round_index`: the cells shuffled by a generator seeded from (`seed`,
    round), so the order is random but reproducible from the recorded seed.

    In `interleave`, each cell's two sides run back to back (which goes first is drawn too), so
    the pair shares as much of the machine's drift as it can; in `duet` both sides run each cell
    together.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    rng = random.Random(f"bigtrain-ab:{seed}:{round_index}")
    cells = list(cell_ids)
    rng.shuffle(cells)
    slots: list[Slot] = []
    for cell_id in cells:
        if mode == DUET:
            slots.append(Slot(position=len(slots), cell_id=cell_id, side=None))
            continue
        first, second = (BASELINE, CANDIDATE) if rng.random() < 0.5 else (CANDIDATE, BASELINE)
        slots.append(Slot(position=len(slots), cell_id=cell_id, side=first))
        slots.append(Slot(position=len(slots), cell_id=cell_id, side=second))
    return slots


def usable_cores() -> list[int]:
    """The CPU cores this process may run on (its affinity mask), in order."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: every core
        return list(range(os.cpu_count() or 1))


def side_cores(mode: str, round_index: int, cores: Sequence[int]) -> dict[str, int]:
    """The core each side's worker is pinned to in a round.

    `interleave`: both on the same core (the last usable one: the first is where the kernel and
    most daemons put their work), one after the other. `duet`: one core each, swapped every round
    so that a slower core hurts each side equally often. BadInput for duet on fewer than 2 cores.
    """
    if not cores:
        raise BadInput("no usable CPU core (the process's affinity mask is empty)")
    if mode == INTERLEAVE:
        return {BASELINE: cores[-1], CANDIDATE: cores[-1]}
    if len(cores) < 2:
        raise BadInput(f"--mode duet runs both sides at once, one per core, and needs at least 2 "
                       f"usable cores; this process may use {len(cores)} "
                       f"(core {', '.join(map(str, cores))}); use --mode interleave")
    a, b = cores[-2], cores[-1]
    return {BASELINE: a, CANDIDATE: b} if round_index % 2 == 0 else {BASELINE: b, CANDIDATE: a}


def next_round_fits(elapsed_s: float, round_durations_s: Sequence[float], budget_s: float) -> bool:
    """True when one more round, as long as the longest so far, still ends within the budget.

    Before any round there is nothing to go by: the first round always runs.
    """
    if not round_durations_s:
        return True
    return elapsed_s + max(round_durations_s) <= budget_s
