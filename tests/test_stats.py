"""The comparison statistics, checked against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from bigtrain import stats
from bigtrain.stats import MetricSamples, decide


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


def test_decide_over_threshold_but_within_noise_is_unchanged():
    base = _repeats(1.0, 0.7, 1.3, 1.0, 0.8)
    cand = _repeats(1.1, 0.8, 1.4, 1.1, 0.9)  # medians +10%, but repeats spread by +-30%
    verdict = decide(base, cand, higher_is_better=False, threshold_pct=5)
    geometric = ((1.1 * 0.8 * 1.4 * 1.1 * 0.9) / (1.0 * 0.7 * 1.3 * 1.0 * 0.8)) ** (1 / 5)
    assert verdict.change_pct == pytest.approx((geometric - 1) * 100, rel=1e-12)
    assert verdict.p_value > 0.01
    assert verdict.outcome == stats.UNCHANGED


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
