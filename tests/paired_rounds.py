"""Seeded synthetic paired rounds for the tests of `bigtrain.compare.paired` (no timing at all).

Noise model, shaped after what this project measured on a shared 2-vCPU box (issue 11): each round
has a drift shared by both sides (lognormal, `drift_sigma` 0.2: the ~20% run-to-run drift), each
process its own noise (lognormal, `side_sigma`), and now and then a process lands in a slow mode (a
bimodal per-process speed: `slow_mode_p` of processes run `slow_mode` times slower). The optimizer
phase is `OPTIMIZER_SHARE` of the step with its own noise; a slower optimizer step scales that
phase, and the step time by the phase's share.
"""

from __future__ import annotations

import math
import random

from bigtrain.compare.paired import PairedRound
from test_compare_support import ok_record

CELLS = ("c0", "c1", "c2", "c3", "c4", "c5")
OPTIMIZER_SHARE = 0.3
RSS_BYTES = 500 * 2**20


def synthetic_rounds(
    seed: int,
    n_rounds: int,
    *,
    cells: tuple[str, ...] = CELLS,
    slowdown: float = 1.0,
    optimizer_slowdown: float = 1.0,
    slowed_cells: tuple[str, ...] | None = None,
    side_sigma: float = 0.04,
    drift_sigma: float = 0.2,
    slow_mode_p: float = 0.05,
    slow_mode: float = 1.15,
) -> dict[str, list[PairedRound]]:
    """Rounds of `cells`, round_index 0.. ; in `slowed_cells` (default all) the candidate's step is
    `slowdown` times slower and its optimizer phase `optimizer_slowdown` times slower."""
    rng = random.Random(seed)
    slowed = set(cells if slowed_cells is None else slowed_cells)
    rounds: dict[str, list[PairedRound]] = {cell: [] for cell in cells}

    def process(cell: str, cell_number: int, index: int, drift: float, *, candidate: bool):
        base_s = 0.004 * (1 + cell_number) * drift
        own = math.exp(rng.gauss(0.0, side_sigma)) * (slow_mode if rng.random() < slow_mode_p
                                                      else 1.0)
        optimizer_s = base_s * OPTIMIZER_SHARE * own * math.exp(rng.gauss(0.0, side_sigma / 2))
        rest_s = base_s * (1 - OPTIMIZER_SHARE) * own
        if candidate and cell in slowed:
            optimizer_s *= optimizer_slowdown
            rest_s *= slowdown
            optimizer_s *= slowdown
        step_s = rest_s + optimizer_s
        return ok_record("cand" if candidate else "base", cell, index,
                         [step_s * 0.98, step_s, step_s * 1.03], optimizer_s=optimizer_s,
                         peak_rss_bytes=RSS_BYTES + 4096 * rng.randrange(4))

    for index in range(n_rounds):
        for cell_number, cell in enumerate(cells):
            drift = math.exp(rng.gauss(0.0, drift_sigma))
            rounds[cell].append(PairedRound(
                round_index=index,
                baseline=process(cell, cell_number, index, drift, candidate=False),
                candidate=process(cell, cell_number, index, drift, candidate=True),
            ))
    return rounds
