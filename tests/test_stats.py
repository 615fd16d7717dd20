"""The comparison statistics, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from bigtrain.compare import stats
from bigtrain.compare.stats import MetricSamples, decide


def test_ratio_of_medians_uses_medians_not_means():
    # medians 2 and 4 (the 100 moves the mean, not the median)
    assert stats.ratio_of_medians([1, 2, 3], [3, 4, 100]) == 2.0
    # even counts: median of [1, 2, 3, 5] is 2.5; of [5, 5] is 5
    assert stats.ratio_of_medians([1, 2, 3, 5], [5, 5]) == 2.0


def test_ratio_of_medians_with_zero_baseline():
    assert stats.ratio_of_medians([0, 0], [0]) == 1.0
    assert stats.ratio_of_medians([0], [3]) == math.inf


def test_mann_whitney_exact_p_for_complete_separation():
    # 3 vs 3 with no overlap: 2 of the C(6,3) = 20 equally likely orderings are this extreme.
    assert stats.mann_whitney_test([1, 2, 3], [4, 5, 6]).p_value == pytest.approx(2 / 20)
    # 5 vs 5: 2 / C(10,5) = 2 / 252
    assert stats.mann_whitney_test([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]).p_value == pytest.approx(
        2 / 252
    )


def test_mann_whitney_all_equal_is_no_evidence():
    assert stats.mann_whitney_test([2.0] * 6, [2.0] * 6).p_value == 1.0


def test_welch_log_ratio_against_hand_computation():
    # logs: baseline [0, 0.2] (mean 0.1), candidate [0.3, 0.5] (mean 0.4); each variance 0.02,
    # so se = sqrt(0.02/2 + 0.02/2) = sqrt(0.02), t = 0.3 / sqrt(0.02) = sqrt(4.5), and Welch's
    # df = (0.01 + 0.01)^2 / (0.01^2 + 0.01^2) = 2. For Student's t with 2 df the two-sided tail is
    # 1 - t / sqrt(t^2 + 2) = 1 - sqrt(4.5 / 6.5) = 1 - 3 / sqrt(13).
    base = [math.exp(0.0), math.exp(0.2)]
    cand = [math.exp(0.3), math.exp(0.5)]
    result = stats.welch_log_ratio_test(base, cand, alpha=0.05)
    assert result.p_value == pytest.approx(1 - 3 / math.sqrt(13), rel=1e-9)
    # 95% critical value for 2 df: t / sqrt(t^2 + 2) = 0.95  =>  t^2 = 2 * 0.9025 / 0.0975
    t_crit = math.sqrt(2 * 0.9025 / 0.0975)
    assert result.ratio_low == pytest.approx(math.exp(0.3 - t_crit * math.sqrt(0.02)), rel=1e-9)
    assert result.ratio_high == pytest.approx(math.exp(0.3 + t_crit * math.sqrt(0.02)), rel=1e-9)


def test_welch_without_spread_is_exact():
    same = stats.welch_log_ratio_test([2.0, 2.0], [2.0, 2.0, 2.0])
    assert (same.p_value, same.ratio_low, same.ratio_high) == (1.0, 1.0, 1.0)
    shifted = stats.welch_log_ratio_test([2.0, 2.0], [3.0, 3.0])
    assert shifted.p_value == 0.0
    assert shifted.ratio_low == pytest.approx(1.5)


def test_welch_refuses_single_values_and_non_positive():
    with pytest.raises(ValueError):
        stats.welch_log_ratio_test([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        stats.welch_log_ratio_test([0.0, 1.0], [1.0, 2.0])


def _repeats(*values: float) -> MetricSamples:
    return MetricSamples(per_repeat=tuple(values))


def test_decide_regression_needs_threshold_and_significance():
    base = _repeats(1.00, 1.01, 0.99, 1.00, 1.00)
    slow = _repeats(1.10, 1.11, 1.09, 1.10, 1.10)  # +10%, tiny spread
    verdict = decide(base, slow, higher_is_better=False, threshold_pct=5)
    assert verdict.outcome == stats.REGRESSED
    # With repeats the change is the geometric-mean ratio the Welch test is about:
    # (1.10*1.11*1.09*1.10*1.10)^(1/5) / (1.00*1.01*0.99*1.00*1.00)^(1/5)
    expected = ((1.10 * 1.11 * 1.09 * 1.10 * 1.10) / (1.00 * 1.01 * 0.99)) ** (1 / 5)
    assert verdict.ratio == pytest.approx(expected, rel=1e-12)
    assert verdict.change_pct == pytest.approx((expected - 1) * 100, rel=1e-12)
    assert verdict.worse_pct == pytest.approx((expected - 1) * 100, rel=1e-12)
    assert verdict.method == stats.METHOD_REPEATS
    assert verdict.p_value < 1e-6
    assert verdict.ratio_low < 1.10 < verdict.ratio_high
    assert (verdict.baseline_n, verdict.candidate_n) == (5, 5)


def test_decide_significant_but_under_threshold_is_unchanged():
    base = _repeats(1.00, 1.00, 1.001, 0.999)
    cand = _repeats(1.03, 1.03, 1.031, 1.029)  # +3%, clearly real, but under 5%
    verdict = decide(base, cand, higher_is_better=False, threshold_pct=5)
    assert verdict.p_value < 1e-6
    assert verdict.outcome == stats.UNCHANGED


def test_decide_over_threshold_but_within_noise_is_undecided():
    """Issue 30: not significant is not "no change" -- the interval reaches far past the band."""
    base = _repeats(1.0, 0.7, 1.3, 1.0, 0.8)
    cand = _repeats(1.1, 0.8, 1.4, 1.1, 0.9)  # medians +10%, but repeats spread by +-30%
    verdict = decide(base, cand, higher_is_better=False, threshold_pct=5)
    geometric = ((1.1 * 0.8 * 1.4 * 1.1 * 0.9) / (1.0 * 0.7 * 1.3 * 1.0 * 0.8)) ** (1 / 5)
    assert verdict.change_pct == pytest.approx((geometric - 1) * 100, rel=1e-12)
    assert verdict.p_value > 0.01
    assert verdict.ratio_low < 1 / 1.05 and verdict.ratio_high > 1.05
    assert verdict.outcome == stats.UNDECIDED


# logs [0, 0.2] a side: each variance 0.02, se = sqrt(0.02/2 + 0.02/2) = sqrt(0.02), Welch df = 2,
# and for 2 df the two-sided 99% critical value solves t / sqrt(t^2 + 2) = 0.99.
_T99_DF2 = math.sqrt(2 * 0.99**2 / (1 - 0.99**2))


def test_noisy_a_a_pair_is_undecided_with_its_interval_and_detectable_change():
    noisy = _repeats(math.exp(0.0), math.exp(0.2))
    verdict = decide(noisy, noisy, higher_is_better=False, threshold_pct=5)
    half_width = _T99_DF2 * math.sqrt(0.02)  # 1.4036: the interval is [0.246, 4.07]
    assert verdict.p_value == 1.0 and verdict.ratio == pytest.approx(1.0)
    assert verdict.ratio_low == pytest.approx(math.exp(-half_width), rel=1e-9)
    assert verdict.ratio_high == pytest.approx(math.exp(half_width), rel=1e-9)
    assert verdict.outcome == stats.UNDECIDED
    # the smallest change this pair could have shown beyond the band: the band edge plus the
    # interval's half-width in logs
    assert verdict.mde_pct == pytest.approx((1.05 * math.exp(half_width) - 1) * 100, rel=1e-9)
    assert verdict.mde_pct == pytest.approx(327.3, abs=0.1)
    assert "could detect >= 327%" in verdict.explain()


def test_issue_30_busy_box_a_a_pair_is_undecided_not_unchanged():
    # like the issue's pair: 3 repeats a side, 9.97 ms vs 0.930 ms geomean, -90.7% (p = 0.21 here,
    # 0.12 there), and a 99% interval of the ratio from 1e-5 to 756: once read "unchanged"
    base = _repeats(0.030, 0.010, 0.0033)
    cand = _repeats(0.0093, 0.00093, 0.000093)
    for higher_is_better in (False, True):
        verdict = decide(base, cand, higher_is_better=higher_is_better, threshold_pct=5)
        assert verdict.change_pct == pytest.approx(-90.67, abs=0.01)
        assert verdict.p_value == pytest.approx(0.21, abs=0.005)
        assert verdict.outcome == stats.UNDECIDED


def test_tight_a_a_pair_is_unchanged():
    tight = _repeats(math.exp(0.0), math.exp(0.002))  # 0.2% apart: se = sqrt(2e-6)
    verdict = decide(tight, tight, higher_is_better=False, threshold_pct=5)
    half_width = _T99_DF2 * math.sqrt(2e-6)
    assert verdict.ratio_high == pytest.approx(math.exp(half_width), rel=1e-9)
    assert 1 / 1.05 < verdict.ratio_low < verdict.ratio_high < 1.05
    assert verdict.outcome == stats.UNCHANGED
    assert verdict.mde_pct == pytest.approx((1.05 * math.exp(half_width) - 1) * 100, rel=1e-9)
    assert "could detect" not in verdict.explain()  # said on undecided verdicts only


def test_clear_2x_regression_is_regressed_for_time_and_throughput():
    base, slow = _repeats(1.00, 1.01, 0.99), _repeats(2.00, 2.02, 1.98)
    assert decide(base, slow, higher_is_better=False, threshold_pct=5).outcome == stats.REGRESSED
    # the same runs as throughput (reciprocal): the band is symmetric in logs, so alike
    rate = lambda s: _repeats(*(1 / x for x in s.per_repeat))  # noqa: E731
    assert decide(rate(base), rate(slow), higher_is_better=True,
                  threshold_pct=5).outcome == stats.REGRESSED


def test_significant_change_under_threshold_whose_interval_crosses_the_band_is_undecided():
    # logs [0, 0.01] vs [0.04, 0.05]: +4.08%, se = sqrt(5e-5), t = 5.66 on 2 df: p = 0.0299;
    # the 95% interval exp(0.04 +- 4.303 * 0.00707) = [1.0096, 1.0729] reaches past 1.05
    base = _repeats(math.exp(0.0), math.exp(0.01))
    cand = _repeats(math.exp(0.04), math.exp(0.05))
    verdict = decide(base, cand, higher_is_better=False, threshold_pct=5, alpha=0.05)
    assert verdict.p_value == pytest.approx(1 - math.sqrt(32 / 34), rel=1e-9)
    assert verdict.ratio_low > 1 and verdict.ratio_high > 1.05
    assert verdict.outcome == stats.UNDECIDED


def test_no_interval_keeps_the_threshold_rule():
    """Mann-Whitney on steps and threshold-only steady metrics give no interval: not beyond the
    threshold and the noise stays unchanged, and no detectable change is claimed."""
    steps = tuple(1.0 + 0.01 * (i % 7) for i in range(20))
    one = MetricSamples(per_repeat=(1.03,), within=steps)
    verdict = decide(one, one, higher_is_better=False, threshold_pct=5)
    assert (verdict.method, verdict.outcome, verdict.mde_pct) == (
        stats.METHOD_STEPS, stats.UNCHANGED, None)
    verdict = decide(_repeats(100.0), _repeats(104.0), higher_is_better=False, threshold_pct=5)
    assert (verdict.outcome, verdict.mde_pct) == (stats.UNCHANGED, None)


def test_decide_direction_for_throughput():
    base = _repeats(100.0, 100.5, 99.5)
    fewer = _repeats(80.0, 80.4, 79.6)  # -20% items/s: worse
    more = _repeats(120.0, 120.6, 119.4)
    assert decide(base, fewer, higher_is_better=True, threshold_pct=5).outcome == stats.REGRESSED
    assert decide(base, more, higher_is_better=True, threshold_pct=5).outcome == stats.IMPROVED
    assert decide(base, more, higher_is_better=False, threshold_pct=5).outcome == stats.REGRESSED
    assert decide(base, fewer, higher_is_better=True, threshold_pct=5).worse_pct == pytest.approx(20)


def test_decide_single_repeat_uses_step_samples():
    steps_base = tuple(1.0 + 0.001 * i for i in range(20))
    steps_cand = tuple(1.2 + 0.001 * i for i in range(20))
    base = MetricSamples(per_repeat=(1.0095,), within=steps_base)
    cand = MetricSamples(per_repeat=(1.2095,), within=steps_cand)
    verdict = decide(base, cand, higher_is_better=False, threshold_pct=5)
    assert verdict.method == stats.METHOD_STEPS
    assert verdict.outcome == stats.REGRESSED
    assert verdict.ratio_low is None
    assert (verdict.baseline_n, verdict.candidate_n) == (20, 20)
    # complete separation of 20 vs 20: the normal approximation gives p far below 1e-6
    assert verdict.p_value < 1e-6


def test_decide_single_value_falls_back_to_threshold_and_says_so():
    verdict = decide(_repeats(100.0), _repeats(104.0), higher_is_better=False, threshold_pct=5)
    assert (verdict.outcome, verdict.p_value) == (stats.UNCHANGED, None)
    assert "noise not measured" in verdict.method
    verdict = decide(_repeats(100.0), _repeats(106.0), higher_is_better=False, threshold_pct=5)
    assert verdict.outcome == stats.REGRESSED


def test_explain_names_method_p_and_interval():
    verdict = decide(
        _repeats(1.0, 1.01, 0.99), _repeats(1.2, 1.21, 1.19), higher_is_better=False, threshold_pct=5
    )
    text = verdict.explain()
    assert text.startswith(stats.METHOD_REPEATS)
    assert "p=" in text and "99% CI of ratio [" in text and "n=3 vs 3" in text


def test_decide_refuses_negative_threshold():
    with pytest.raises(ValueError):
        decide(_repeats(1.0), _repeats(1.0), higher_is_better=False, threshold_pct=-1)


def test_welch_interval_does_not_overflow_at_tiny_alpha_with_two_repeats():
    """`bench/compare_power.py --trials 20 --runs 2 --repeats 2 --per-side 2` at alpha 0.001 hit
    OverflowError: two noisy repeats a side give ~1 degree of freedom, a t quantile in the
    hundreds, and an interval edge of exp(1000+)."""
    test = stats.welch_log_ratio_test([1.0, 100.0], [1.0, 1e6], alpha=0.001)
    assert test.ratio_high == math.inf
    assert 0 <= test.ratio_low < 1
    verdict = decide(MetricSamples(per_repeat=(1.0, 100.0)), MetricSamples(per_repeat=(1.0, 1e6)),
                     higher_is_better=False, threshold_pct=5, alpha=0.001)
    # within the (enormous) noise, which leaves any change possible: undecided, no finite bound
    assert verdict.outcome == "undecided" and verdict.mde_pct == math.inf
    assert "inf]" in verdict.explain() and "could detect" not in verdict.explain()


def test_safe_exp_is_exp_until_it_overflows():
    assert stats.safe_exp(1.0) == math.exp(1.0)
    assert stats.safe_exp(1e4) == math.inf
    assert stats.safe_exp(-1e4) == 0.0


def test_decide_shows_geometric_means_where_the_ratio_is_of_geometric_means():
    verdict = decide(MetricSamples(per_repeat=(1.0, 4.0)), MetricSamples(per_repeat=(2.0, 8.0)),
                     higher_is_better=False, threshold_pct=5)
    assert verdict.center == stats.CENTER_GEOMEAN
    assert verdict.baseline_shown == pytest.approx(2.0)  # sqrt(1 * 4), not the median 2.5
    assert verdict.candidate_shown == pytest.approx(4.0)
    assert verdict.ratio == pytest.approx(verdict.candidate_shown / verdict.baseline_shown)


# -- paired rounds ------------------------------------------------------------------------------
def test_paired_interval_against_hand_computation():
    # log ratios log(2), log(2)+0.1, log(2)-0.1: mean log(2), sd 0.1, se 0.1/sqrt(3);
    # t(0.975, df 2) = 4.302653
    base = [1.0, 1.0, 1.0]
    cand = [2.0, 2.0 * math.exp(0.1), 2.0 * math.exp(-0.1)]
    interval = stats.paired_log_ratio_interval(base, cand, level=0.05)
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert interval.ratio == pytest.approx(2.0)
    assert interval.ratio_low == pytest.approx(2.0 * math.exp(-half), rel=1e-6)
    assert interval.ratio_high == pytest.approx(2.0 * math.exp(half), rel=1e-6)
    assert interval.p_value < 0.01


def test_paired_interval_edge_cases():
    one = stats.paired_log_ratio_interval([1.0], [1.1], level=0.01)
    assert (one.ratio_low, one.ratio_high) == (0.0, math.inf)
    flat = stats.paired_log_ratio_interval([1.0, 2.0, 3.0], [1.1, 2.2, 3.3], level=0.01)
    assert flat.ratio_low == pytest.approx(1.1) and flat.ratio_high == pytest.approx(1.1)
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired_log_ratio_interval([1.0], [1.0, 2.0], level=0.01)
    with pytest.raises(ValueError, match="positive"):
        stats.paired_log_ratio_interval([0.0, 1.0], [1.0, 1.0], level=0.01)


def test_band_outcome_in_both_directions():
    band = {"threshold_pct": 5.0}
    assert stats.band_outcome(1.06, 1.2, higher_is_better=False, **band) == "regressed"
    assert stats.band_outcome(1.06, 1.2, higher_is_better=True, **band) == "improved"
    assert stats.band_outcome(0.8, 0.94, higher_is_better=False, **band) == "improved"
    assert stats.band_outcome(0.8, 0.94, higher_is_better=True, **band) == "regressed"
    # symmetric in logs: the lower edge is 1/1.05 = 0.9524, not 0.95
    assert stats.band_outcome(0.8, 0.951, higher_is_better=True, **band) == "regressed"
    assert stats.band_outcome(0.951, 1.0, higher_is_better=True, **band) == "undecided"
    assert stats.band_outcome(0.97, 1.04, higher_is_better=False, **band) == "unchanged"
    assert stats.band_outcome(1.0, 1.07, higher_is_better=False, **band) == "undecided"
    assert stats.band_outcome(0.9, 1.1, higher_is_better=False, **band) == "undecided"


@pytest.mark.parametrize("max_rounds", [None, 3, 10, 40])
def test_look_levels_spend_at_most_alpha_over_family_and_looks(max_rounds):
    family = 18
    total = sum(stats.look_level(0.01, look, family_size=family, max_rounds=max_rounds)
                for look in range(1, 5000)) * family
    assert total <= 0.01 + 1e-12
    assert total > 0.0099  # and spends nearly all of it (the open-ended series converges slowly)
    assert stats.look_level(0.01, 2, family_size=family, max_rounds=max_rounds) == 0.0


def test_detectable_change_is_threshold_plus_half_width():
    interval = stats.paired_log_ratio_interval([1.0, 1.0, 1.0], [1.0, math.exp(0.1),
                                                                  math.exp(-0.1)], level=0.05)
    half = math.log(interval.ratio_high / interval.ratio_low) / 2
    assert stats.detectable_change_pct(interval, threshold_pct=5) == pytest.approx(
        (1.05 * math.exp(half) - 1) * 100)
    one = stats.paired_log_ratio_interval([1.0], [1.0], level=0.05)
    assert stats.detectable_change_pct(one, threshold_pct=5) == math.inf


@pytest.mark.parametrize(("max_rounds", "last_look"), [(None, 3), (None, 12), (40, 12), (40, 3),
                                                       (10, 10)])
def test_a_last_look_gets_the_kept_alpha_and_the_total_stays_within_alpha(max_rounds, last_look):
    family = 6
    levels = [stats.look_level(0.01, look, family_size=family, max_rounds=max_rounds,
                               last_look=last_look) for look in range(1, 100)]
    assert sum(levels) * family <= 0.01 + 1e-12
    assert all(level == 0 for level in levels[last_look:])  # nothing after the last look
    kept = stats.look_level(0.01, last_look, family_size=family, max_rounds=max_rounds)
    assert levels[last_look - 1] >= kept
    if max_rounds is not None:
        assert levels[last_look - 1] * family == pytest.approx(0.005)


def test_running_sums_give_the_paired_interval():
    base = [1.0, 1.2, 0.9, 1.1]
    cand = [1.1, 1.25, 1.05, 1.2]
    logs = [math.log(c / b) for b, c in zip(base, cand)]
    mean, low, high = stats.paired_look_interval(len(logs), sum(logs), sum(x * x for x in logs),
                                                 level=0.01)
    full = stats.paired_log_ratio_interval(base, cand, level=0.01)
    assert math.exp(low) == pytest.approx(full.ratio_low)
    assert math.exp(high) == pytest.approx(full.ratio_high)


def test_wilson_interval_matches_the_textbook_values() -> None:
    from bigtrain.compare.stats import wilson_interval

    assert tuple(round(x, 4) for x in wilson_interval(5, 10)) == (0.2366, 0.7634)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and round(high, 4) == 0.1611
    assert wilson_interval(0, 0) == (0.0, 1.0)
