"""The gate on paired rounds (`bigbench ab`'s statistics), on seeded synthetic rounds only.

Nothing here times anything: the rounds come from tests/paired_rounds.py's noise model.
"""

from __future__ import annotations

import math

import pytest

from bigtrain import compare as cmp
from bigtrain.compare.paired import PairedRound, all_decided, compare_paired
from bigtrain.errors import BadInput
from bigtrain.stats import UNDECIDED
from paired_rounds import synthetic_rounds
from test_compare_support import failed_record, ok_record


def _step_verdicts(result):
    return {cell.cell_id: next(m for m in cell.metrics if m.metric.name == "step_time")
            for cell in result.cells if cell.metrics}


def test_a_ten_percent_slowdown_is_decided_regressed():
    rounds = synthetic_rounds(seed=7, n_rounds=30, slowdown=1.10, side_sigma=0.02,
                              slow_mode_p=0.0)
    result = compare_paired(rounds, max_rounds=30)
    assert {c.outcome for c in result.cells} == {"regressed"}
    assert result.gate_failed
    assert all_decided(result)
    for verdict in _step_verdicts(result).values():
        assert verdict.outcome == "regressed"
        assert verdict.verdict.ratio_low > 1.05  # the interval clears the band


def test_identical_sides_are_decided_unchanged_with_zero_noise():
    rounds = synthetic_rounds(seed=3, n_rounds=4, side_sigma=0.0, slow_mode_p=0.0,
                              drift_sigma=0.3)
    # the same value on both sides in every round: candidate = baseline exactly
    same = {cell: [PairedRound(round_index=r.round_index, baseline=r.baseline,
                               candidate=r.baseline) for r in rs] for cell, rs in rounds.items()}
    result = compare_paired(same)
    assert {c.outcome for c in result.cells} == {"unchanged"}
    assert all_decided(result)
    assert not result.gate_failed


def test_one_round_is_undecided_and_can_detect_nothing():
    result = compare_paired(synthetic_rounds(seed=1, n_rounds=1))
    assert {c.outcome for c in result.cells} == {UNDECIDED}
    assert not all_decided(result)
    assert not result.gate_failed  # undecided does not gate
    for m in _step_verdicts(result).values():
        assert m.verdict.mde_pct == math.inf
        assert m.verdict.rounds == 1


def test_the_result_renders_like_compare():
    result = compare_paired(synthetic_rounds(seed=2, n_rounds=5))
    data = cmp.to_json(result)
    assert data["counts"]["undecided"] + data["counts"]["unchanged"] == 6
    assert "paired rounds" in cmp.render_markdown(result)


def test_a_cell_failed_in_the_candidate_fails_the_gate():
    rounds = synthetic_rounds(seed=4, n_rounds=5, cells=("c0", "c1"))
    broken = rounds["c1"][2]
    rounds["c1"][2] = PairedRound(round_index=broken.round_index, baseline=broken.baseline,
                                  candidate=failed_record("cand", "c1", 2, status="crashed"))
    result = compare_paired(rounds)
    outcomes = {c.cell_id: c.outcome for c in result.cells}
    assert outcomes["c1"] == "failed"
    assert result.gate_failed


def test_a_cell_missing_on_one_side_is_missing_or_new():
    rounds = synthetic_rounds(seed=5, n_rounds=4, cells=("c0", "c1", "c2"))
    rounds["c1"] = [PairedRound(round_index=r.round_index, baseline=r.baseline, candidate=None)
                    for r in rounds["c1"]]
    rounds["c2"] = [PairedRound(round_index=r.round_index, baseline=None, candidate=r.candidate)
                    for r in rounds["c2"]]
    outcomes = {c.cell_id: c.outcome for c in compare_paired(rounds).cells}
    assert outcomes["c1"] == "missing"
    assert outcomes["c2"] == "new"


def test_bad_alpha_is_bad_input():
    with pytest.raises(BadInput, match="alpha"):
        compare_paired(synthetic_rounds(seed=1, n_rounds=3), alpha=1.5)


def test_ok_record_helper_is_what_rounds_hold():
    record = ok_record("b", "c0", 0, [0.01, 0.011])
    assert PairedRound(round_index=0, baseline=record, candidate=record).baseline is record
