"""Statistics for comparing two runs: pure functions on plain sequences of floats.

The question `bigbench compare` asks of every metric is: did it change by more than the threshold,
and by more than the noise? The noise that matters is the noise between processes: on a busy box two
processes running the same step can differ by far more than the steps within one process do. So
when both runs have repeats (independent worker processes), the unit of the test is the repeat: a
Welch t-test on the logarithms of the per-repeat values, which turns the between-repeat spread into
a p-value and a confidence interval of the ratio. With a single repeat on a side, the only samples
are the steps of that one process; a Mann-Whitney U test on them says whether the two step-time
distributions differ, but cannot see process-to-process noise (the verdict says so). With neither,
only the threshold is applied.

No numpy, torch or pandas here; scipy supplies the distributions.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: Significance level of the noise test (two-sided). A change must be both beyond the threshold and
#: significant at this level to count; the confidence interval shown is the matching 1 - alpha one.
DEFAULT_ALPHA = 0.01
#: Below this many steps on a side the within-repeat test is not attempted.
MIN_STEP_SAMPLES = 5

REGRESSED = "regressed"
IMPROVED = "improved"
UNCHANGED = "unchanged"

METHOD_REPEATS = "welch-t on log per-repeat values"
METHOD_STEPS = "mann-whitney-u on step samples (1 repeat: between-process noise not measured)"
METHOD_THRESHOLD_ONLY = "threshold only (one value a side: noise not measured)"
METHOD_NO_NOISE_ESTIMATE = ("not gated: one value a side and this metric is noisy; "
                            "use --repeats 2 or more")


@dataclass(frozen=True, kw_only=True)
class MetricSamples:
    """What one run measured for one metric of one cell.

    `per_repeat` holds one value per repeat (a repeat's median step time, its throughput, its peak
    memory); `within` holds raw per-step samples, pooled over the repeats, where the metric has them.
    """

    per_repeat: tuple[float, ...]
    within: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.per_repeat:
            raise ValueError("MetricSamples needs at least one per-repeat value")


@dataclass(frozen=True, kw_only=True)
class RatioTest:
    """A test of candidate against baseline: two-sided p-value and an interval of the ratio."""

    p_value: float
    ratio_low: float | None = None
    ratio_high: float | None = None
    ratio: float | None = None  # the point estimate the test is about, where it has one


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The decision for one metric of one cell."""

    outcome: str  # regressed | improved | unchanged
    ratio: float  # candidate / baseline: geometric-mean ratio with repeats, else of medians
    change_pct: float  # (ratio - 1) * 100, signed: the raw direction of the number
    threshold_pct: float
    higher_is_better: bool
    method: str
    alpha: float
    p_value: float | None = None
    ratio_low: float | None = None  # the (1 - alpha) interval of the ratio, where the method has one
    ratio_high: float | None = None
    baseline_median: float
    candidate_median: float
    baseline_n: int  # repeats (or steps, for the step test) that went into the test
    candidate_n: int

    @property
    def worse_pct(self) -> float:
        """How much worse the candidate is, in percent of the baseline; negative when better."""
        return -self.change_pct if self.higher_is_better else self.change_pct

    def explain(self) -> str:
        """One line on how the verdict was reached: method and p-value or interval."""
        parts = [self.method]
        if self.p_value is not None:
            parts.append(f"p={self.p_value:.3g}")
        if self.ratio_low is not None and self.ratio_high is not None:
            level = round((1 - self.alpha) * 100, 2)
            parts.append(f"{level:g}% CI of ratio [{self.ratio_low:.4g}, {self.ratio_high:.4g}]")
        parts.append(f"n={self.baseline_n} vs {self.candidate_n}")
        return "; ".join(parts)


def ratio_of_medians(baseline: Sequence[float], candidate: Sequence[float]) -> float:
    """median(candidate) / median(baseline); inf when only the baseline median is zero, 1 when both are."""
    if not baseline or not candidate:
        raise ValueError("ratio of medians needs samples on both sides")
    base = statistics.median(baseline)
    cand = statistics.median(candidate)
    if base == 0:
        return 1.0 if cand == 0 else math.copysign(math.inf, cand)
    return cand / base


def mann_whitney_test(baseline: Sequence[float], candidate: Sequence[float]) -> RatioTest:
    """Two-sided Mann-Whitney U test: do the two samples come from the same distribution?

    Exact for small tie-free samples, the normal approximation with tie correction otherwise
    (scipy's `method="auto"`). No interval: U says nothing directly about a ratio.
    """
    if len(baseline) < 1 or len(candidate) < 1:
        raise ValueError("Mann-Whitney U needs samples on both sides")
    from scipy.stats import mannwhitneyu

    if len(set(baseline) | set(candidate)) == 1:
        return RatioTest(p_value=1.0)  # every value equal: no evidence of any difference
    result = mannwhitneyu(candidate, baseline, alternative="two-sided", method="auto")
    return RatioTest(p_value=float(result.pvalue))


def welch_log_ratio_test(
    baseline: Sequence[float], candidate: Sequence[float], *, alpha: float = DEFAULT_ALPHA
) -> RatioTest:
    """Welch's t-test on log values: p-value and the (1 - alpha) interval of the geometric-mean ratio.

    Working on logarithms makes the effect a ratio (a 10% slowdown is the same shift on a fast and
    a slow cell) and keeps the interval positive. Each side needs at least two positive values.
    When neither side varies at all, the difference is exact: p is 0 (or 1 when there is none).
    """
    if len(baseline) < 2 or len(candidate) < 2:
        raise ValueError("Welch's test needs at least two values a side")
    if min(baseline) <= 0 or min(candidate) <= 0:
        raise ValueError("log-ratio test needs positive values")
    from scipy.stats import t as student_t

    log_base = [math.log(x) for x in baseline]
    log_cand = [math.log(x) for x in candidate]
    diff = statistics.fmean(log_cand) - statistics.fmean(log_base)
    var_base = statistics.variance(log_base) / len(log_base)
    var_cand = statistics.variance(log_cand) / len(log_cand)
    se = math.sqrt(var_base + var_cand)
    if se == 0:
        ratio = math.exp(diff)
        return RatioTest(p_value=1.0 if diff == 0 else 0.0, ratio_low=ratio, ratio_high=ratio)
    # Welch-Satterthwaite degrees of freedom
    df = (var_base + var_cand) ** 2 / (
        var_base**2 / (len(log_base) - 1) + var_cand**2 / (len(log_cand) - 1)
    )
    t_stat = diff / se
    p_value = float(2 * student_t.sf(abs(t_stat), df))
    half_width = float(student_t.ppf(1 - alpha / 2, df)) * se
    return RatioTest(
        p_value=p_value,
        ratio_low=math.exp(diff - half_width),
        ratio_high=math.exp(diff + half_width),
        ratio=math.exp(diff),
    )


def decide(
    baseline: MetricSamples,
    candidate: MetricSamples,
    *,
    higher_is_better: bool,
    threshold_pct: float,
    alpha: float = DEFAULT_ALPHA,
    gate_without_test: bool = True,
) -> Verdict:
    """Regressed, improved or unchanged: beyond the threshold AND beyond the noise, or unchanged.

    The size of the change is the ratio of the medians of the per-repeat values. The noise test is
    chosen by what the samples allow: between repeats (Welch on logs) when both sides have at least
    two repeats, else within the single repeat (Mann-Whitney U on the steps) when both sides have
    step samples, else none: the threshold alone decides when `gate_without_test` (for steady
    metrics such as memory), otherwise the metric cannot regress, and the verdict says why.
    With repeats, the change is the geometric-mean ratio the Welch test is about, so the size
    and the evidence always describe the same quantity.
    """
    if threshold_pct < 0:
        raise ValueError(f"threshold must not be negative, got {threshold_pct}")
    ratio = ratio_of_medians(baseline.per_repeat, candidate.per_repeat)
    test: RatioTest | None
    if len(baseline.per_repeat) >= 2 and len(candidate.per_repeat) >= 2 and _all_positive(
        baseline.per_repeat, candidate.per_repeat
    ):
        method = METHOD_REPEATS
        test = welch_log_ratio_test(baseline.per_repeat, candidate.per_repeat, alpha=alpha)
        n_base, n_cand = len(baseline.per_repeat), len(candidate.per_repeat)
    elif len(baseline.within) >= MIN_STEP_SAMPLES and len(candidate.within) >= MIN_STEP_SAMPLES:
        method = METHOD_STEPS
        test = mann_whitney_test(baseline.within, candidate.within)
        n_base, n_cand = len(baseline.within), len(candidate.within)
    else:
        method = METHOD_THRESHOLD_ONLY if gate_without_test else METHOD_NO_NOISE_ESTIMATE
        test = None
        n_base, n_cand = len(baseline.per_repeat), len(candidate.per_repeat)
    if test is not None and test.ratio is not None:
        ratio = test.ratio

    change_pct = (ratio - 1.0) * 100.0 if math.isfinite(ratio) else math.copysign(math.inf, ratio)
    worse_pct = -change_pct if higher_is_better else change_pct
    significant = test.p_value < alpha if test is not None else gate_without_test
    if worse_pct > threshold_pct and significant:
        outcome = REGRESSED
    elif -worse_pct > threshold_pct and significant:
        outcome = IMPROVED
    else:
        outcome = UNCHANGED
    return Verdict(
        outcome=outcome,
        ratio=ratio,
        change_pct=change_pct,
        threshold_pct=threshold_pct,
        higher_is_better=higher_is_better,
        method=method,
        alpha=alpha,
        p_value=test.p_value if test else None,
        ratio_low=test.ratio_low if test else None,
        ratio_high=test.ratio_high if test else None,
        baseline_median=statistics.median(baseline.per_repeat),
        candidate_median=statistics.median(candidate.per_repeat),
        baseline_n=n_base,
        candidate_n=n_cand,
    )


def _all_positive(*groups: Sequence[float]) -> bool:
    return all(x > 0 for group in groups for x in group)
