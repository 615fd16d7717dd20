"""The paired gate, seen from the A/B driver: records of each round in, a comparison out.

The statistics are `bigtrain.compare.paired`'s (pure functions on the paired per-round ratios);
this module only shapes the driver's records for it. Imported lazily by the driver, so a worker
never loads the compare package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bigtrain.results.schema import CellRecord


def paired_rounds(rounds: Sequence[Mapping[str, Mapping[str, CellRecord]]]) -> dict[str, list[Any]]:
    """`rounds[r][side][cell_id]` as `{cell_id: [PairedRound, ..]}`, for cells both sides
    recorded in a round."""
    from bigtrain.compare.paired import PairedRound

    by_cell: dict[str, list[Any]] = {}
    for index, by_side in enumerate(rounds):
        baseline, candidate = by_side.get("baseline", {}), by_side.get("candidate", {})
        for cell_id in sorted(set(baseline) & set(candidate)):
            by_cell.setdefault(cell_id, []).append(PairedRound(
                round_index=index, baseline=baseline[cell_id], candidate=candidate[cell_id]))
    return by_cell


def decide_rounds(rounds: Sequence[Mapping[str, Mapping[str, CellRecord]]], *,
                  thresholds_pct: Mapping[str, float] | None, alpha: float | None,
                  max_rounds: int, runs: Mapping[str, Any] | None = None,
                  final: bool = False) -> tuple[Any, bool]:
    """The comparison of every round so far, and whether every cell is decided.

    `runs` maps each side to its run folder's `(run_id, path, environment)`, for the names in
    the rendering and the hardware or software differences between the two sides (shown, never
    refused: two venvs with different torch builds is what an A/B run may be for). `final`: no
    round follows (the budget stopped the run), so the last look may spend the alpha kept for
    the end.
    """
    from bigtrain.compare.paired import all_decided, compare_paired
    from bigtrain.measure.envinfo import fingerprint_differences

    options: dict[str, Any] = {"max_rounds": max_rounds, "final": final}
    if runs is not None:
        (base_id, base_path, base_env), (cand_id, cand_path, cand_env) = (
            runs["baseline"], runs["candidate"])
        options.update(baseline_run=base_id, candidate_run=cand_id, baseline_path=str(base_path),
                       candidate_path=str(cand_path),
                       hardware_differences=fingerprint_differences(base_env, cand_env))
    if thresholds_pct is not None:
        options["thresholds"] = thresholds_pct
    if alpha is not None:
        options["alpha"] = alpha
    from bigtrain.compare.busy import busy_note

    warnings = []
    for side in ("baseline", "candidate"):
        note = busy_note([r for by_side in rounds for r in by_side.get(side, {}).values()], side)
        if note:
            warnings.append(note)
    options["warnings"] = tuple(warnings)
    result = compare_paired(paired_rounds(rounds), **options)
    return result, all_decided(result)
