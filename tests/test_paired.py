"""The gate on paired rounds (`bigbench ab`'s statistics), on seeded synthetic rounds only.

Nothing here times anything: the rounds come from tests/paired_rounds.py's noise model.
"""

from __future__ import annotations

import math

import pytest

from bigtrain import compare as cmp
from bigtrain.compare import stats
from bigtrain.compare.paired import PairedRound, all_decided, compare_paired
from bigtrain.common.errors import BadInput
from bigtrain.results.schema import CellRecord
from bigtrain.compare.stats import UNDECIDED
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
    markdown = cmp.render_markdown(result)
    assert "paired rounds" in markdown
    if data["counts"]["undecided"]:
        open_part = markdown.split("<details>")[0]
        assert "### Undecided (the rounds ran out" in open_part and "| undecided |" in open_part


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


# -- the false-alarm rate and what the corrections buy --------------------------------------------
AA_RUNS = 200
AA_ROUNDS = 12
TIGHT_THRESHOLD = 1.0  # a narrow band: the corrections, not the band, must hold the alarms down


def _alarmed(result) -> bool:
    return any(m.outcome in ("regressed", "improved") for c in result.cells for m in c.metrics)


def test_aa_gate_runs_raise_an_alarm_at_most_one_percent_of_the_time():
    alarms = sum(
        _alarmed(compare_paired(synthetic_rounds(seed, AA_ROUNDS), thresholds=f"{TIGHT_THRESHOLD}%"))
        for seed in range(AA_RUNS)
    )
    assert alarms <= AA_RUNS // 100


def _uncorrected_alarm(rounds_by_cell, alpha=0.01) -> bool:
    """The same primitives without the corrections: every test at alpha, at every look."""
    for rounds in rounds_by_cell.values():
        for metric in ("step_time", "optimizer_time", "peak_rss"):
            getter = cmp.METRICS_BY_NAME[metric].value
            for look in range(3, len(rounds) + 1):
                base = [getter(r.baseline) for r in rounds[:look]]
                cand = [getter(r.candidate) for r in rounds[:look]]
                interval = stats.paired_log_ratio_interval(base, cand, level=alpha)
                if stats.band_outcome(interval.ratio_low, interval.ratio_high,
                                      threshold_pct=TIGHT_THRESHOLD,
                                      higher_is_better=False) in ("regressed", "improved"):
                    return True
    return False


def test_without_the_corrections_the_same_runs_alarm_far_more_often():
    runs = [synthetic_rounds(seed, AA_ROUNDS) for seed in range(100)]
    uncorrected = sum(_uncorrected_alarm(rounds) for rounds in runs)
    corrected = sum(_alarmed(compare_paired(rounds, thresholds=f"{TIGHT_THRESHOLD}%"))
                    for rounds in runs)
    assert uncorrected >= 10  # >= 10% of whole A/A runs: the family and the looks add up
    assert corrected <= 1
    assert uncorrected > 5 * max(corrected, 1)


# -- detection, rounds and the detectable change ------------------------------------------------
def test_a_ten_percent_slowdown_with_realistic_noise_is_caught_in_every_cell():
    """~7% noise on each paired log ratio (pinned single-threaded processes measured 6.2-7.4 ms):
    with a 2% threshold, 50 rounds catch a 10% slowdown in at least 95% of the cells (6 cells in
    each of 20 gate runs), and every gate run fails."""
    results = [compare_paired(synthetic_rounds(seed, 50, slowdown=1.10), max_rounds=50,
                              thresholds="2%") for seed in range(20)]
    caught = sum(c.outcome == "regressed" for result in results for c in result.cells)
    assert caught >= 0.95 * 6 * 20
    assert all(result.gate_failed for result in results)


def test_a_slower_optimizer_step_is_caught_on_the_optimizer_metric():
    result = compare_paired(synthetic_rounds(11, 40, optimizer_slowdown=1.25, side_sigma=0.03),
                            max_rounds=40)
    for cell in result.cells:
        outcomes = {m.metric.name: m.outcome for m in cell.metrics}
        assert outcomes["optimizer_time"] == "regressed"
        assert cell.outcome == "regressed"


def _mde(result, cell="c0", metric="step_time"):
    cells = {c.cell_id: c for c in result.cells}
    return next(m.verdict.mde_pct for m in cells[cell].metrics if m.metric.name == metric)


def test_the_detectable_change_shrinks_with_rounds_for_steady_noise():
    # log ratios alternating +-0.05: the same spread at every even number of rounds
    def alternating(n):
        rounds = []
        for i in range(n):
            base = ok_record("b", "c0", i, [0.010])
            factor = math.exp(0.05 if i % 2 else -0.05)
            rounds.append(PairedRound(round_index=i, baseline=base,
                                      candidate=ok_record("c", "c0", i, [0.010 * factor])))
        return {"c0": rounds}

    mdes = [_mde(compare_paired(alternating(n), thresholds="1%")) for n in range(4, 41, 2)]
    assert all(later < earlier for earlier, later in zip(mdes, mdes[1:]))
    assert mdes[-1] > 1.0  # never below the threshold itself


def test_the_detectable_change_shrinks_with_rounds_on_average():
    def mean_mde(n):
        values = [_mde(compare_paired(synthetic_rounds(seed, n), thresholds="1%"), cell)
                  for seed in range(10) for cell in ("c0", "c3")]
        return sum(values) / len(values)

    means = [mean_mde(n) for n in (4, 8, 16, 32)]
    assert all(later < earlier for earlier, later in zip(means, means[1:]))


def test_a_decision_stands_and_records_its_look():
    rounds = synthetic_rounds(5, 30, slowdown=1.5, side_sigma=0.02, slow_mode_p=0.0)
    result = compare_paired(rounds)
    verdicts = _step_verdicts(result)
    assert all(m.outcome == "regressed" for m in verdicts.values())
    # clear by far: decided early, and the cell says how many rounds it took
    assert all(m.verdict.rounds < 30 for m in verdicts.values())
    assert all(c.rounds is not None and c.rounds < 30 for c in result.cells)
    assert result.rounds == 30


def test_rounds_beyond_max_rounds_are_ignored_and_too_few_refused():
    rounds = synthetic_rounds(6, 12)
    result = compare_paired(rounds, max_rounds=5)
    assert result.rounds == 5 and result.max_rounds == 5
    assert all(m.verdict.rounds <= 5 for c in result.cells for m in c.metrics)
    with pytest.raises(BadInput, match="--rounds 2"):
        compare_paired(rounds, max_rounds=2)


# -- records that are not ok ----------------------------------------------------------------------
def test_a_round_failed_on_both_sides_is_left_out():
    rounds = synthetic_rounds(8, 6, cells=("c0",))
    dropped = rounds["c0"][1]
    rounds["c0"][1] = PairedRound(round_index=dropped.round_index,
                                  baseline=failed_record("b", "c0", 1, status="timeout"),
                                  candidate=failed_record("c", "c0", 1, status="timeout"))
    cell = compare_paired(rounds).cells[0]
    assert cell.outcome != "failed"
    assert cell.note == "1 of 6 rounds left out (a side not ok or absent)"
    assert all(m.verdict.baseline_n == 5 for m in cell.metrics if m.verdict.rounds == 6)


def test_a_target_not_reached_in_the_candidate_is_a_regression():
    rounds = synthetic_rounds(9, 4, cells=("c0",))
    last = rounds["c0"][3]
    not_reached = CellRecord.from_json({**failed_record("c", "c0", 3).to_json(),
                                        "status": "not_reached", "protocol": "converge",
                                        "reason": "budget of 200 steps spent at accuracy 0.81"})
    rounds["c0"][3] = PairedRound(round_index=3, baseline=last.baseline, candidate=not_reached)
    result = compare_paired(rounds)
    assert result.cells[0].outcome == "regressed"
    assert "target reached in the baseline, not in the candidate" in result.cells[0].note
    assert result.gate_failed


def test_time_to_target_is_gated_lower_is_better():
    def converge(run_id, cell, index, seconds, steps):
        record = ok_record(run_id, cell, index, [0.01])
        return CellRecord.from_json({**record.to_json(), "protocol": "converge",
                                     "time_to_target_s": seconds, "steps_to_target": steps})

    rounds = {"c0": [PairedRound(round_index=i, baseline=converge("b", "c0", i, 10.0 + i, 100),
                                 candidate=converge("c", "c0", i, (10.0 + i) * 1.3, 130))
                     for i in range(6)]}
    metrics = {m.metric.name: m.outcome
               for m in compare_paired(rounds, metrics=["time_to_target_s", "steps_to_target"])
               .cells[0].metrics}
    assert metrics == {"time_to_target_s": "regressed", "steps_to_target": "regressed"}


def test_a_final_call_spends_the_alpha_kept_for_the_end():
    """A budget that ends the rounds before max_rounds: `final=True` gives the last look the half
    of alpha kept for look max_rounds, so a budget-limited run is not judged at interim levels."""
    rounds = synthetic_rounds(12, 10, slowdown=1.10)
    interim = compare_paired(rounds, max_rounds=40, thresholds="2%")
    final = compare_paired(rounds, max_rounds=40, thresholds="2%", final=True)
    at_the_end = [m.verdict for m in _step_verdicts(final).values() if m.verdict.rounds == 10]
    assert at_the_end
    for verdict in at_the_end:
        assert verdict.alpha == pytest.approx(0.01 / 2 / final.family_size)
        assert verdict.alpha > 10 * 0.01 / 2 / 37 / final.family_size  # an interim look's level
    caught = lambda result: sum(c.outcome == "regressed" for c in result.cells)  # noqa: E731
    assert caught(final) > caught(interim)
