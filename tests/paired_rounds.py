"""Seeded synthetic paired rounds for the tests of `bigtrain.compare.paired` (no timing at all).

Noise model, shaped after what this project measured on a shared 2-vCPU box (issue 11): each round
has a drift shared by both sides (lognormal, sigma 0.2: the ~20% run-to-run drift), each process
its own noise (lognormal, `side_sigma`), and now and then a process lands in a slow mode (a
bimodal per-process speed: `slow_mode_p` of processes run `slow_mode` slower).
"""

from __future__ import annotations

import math
import random

from bigtrain.compare.paired import PairedRound
from test_compare_support import ok_record

CELLS = ("c0", "c1", "c2", "c3", "c4", "c5")


def _process_time(rng: random.Random, base_s: float, drift: float, *, side_sigma: float,
                  slow_mode_p: float, slow_mode: float) -> float:
    factor = math.exp(rng.gauss(0.0, side_sigma))
    if rng.random() < slow_mode_p:
        factor *= slow_mode
    return base_s * drift * factor


def synthetic_rounds(
    seed: int,
    n_rounds: int,
    *,
    cells: tuple[str, ...] = CELLS,
    slowdown: float = 1.0,
    slowed_cells: tuple[str, ...] | None = None,
    side_sigma: float = 0.04,
    drift_sigma: float = 0.2,
    slow_mode_p: float = 0.05,
    slow_mode: float = 1.15,
) -> dict[str, list[PairedRound]]:
    """Rounds of `cells`; the candidate's step is `slowdown` times slower in `slowed_cells` (all)."""
    rng = random.Random(seed)
    slowed = set(cells if slowed_cells is None else slowed_cells)
    rounds: dict[str, list[PairedRound]] = {cell: [] for cell in cells}
    for index in range(n_rounds):
        for cell_number, cell in enumerate(cells):
            base_s = 0.004 * (1 + cell_number)
            drift = math.exp(rng.gauss(0.0, drift_sigma))
            noise = {"side_sigma": side_sigma, "slow_mode_p": slow_mode_p, "slow_mode": slow_mode}
            b = _process_time(rng, base_s, drift, **noise)
            c = _process_time(rng, base_s, drift, **noise) * (slowdown if cell in slowed else 1)
            rounds[cell].append(PairedRound(
                round_index=index,
                baseline=ok_record("base", cell, index, [b * 0.98, b, b * 1.03]),
                candidate=ok_record("cand", cell, index, [c * 0.98, c, c * 1.03]),
            ))
    return rounds
