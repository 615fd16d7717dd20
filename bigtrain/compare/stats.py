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

A change that is not shown beyond the threshold is called unchanged only where the evidence rules
out one beyond it: with repeats, when the Welch interval of the ratio lies inside the threshold
band; an interval that reaches past the band is undecided, as it is for paired rounds below.

No numpy, torch or pandas here; scipy supplies the distributions.
"""

from __future__ import annotations

import functools
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
#: The interval of the ratio reaches past an edge of the threshold band, so the evidence neither
#: shows a change beyond the threshold nor rules one out: paired rounds (`bigbench ab`) that have
#: not settled yet, or separate runs whose repeats are too noisy (`decide`).
UNDECIDED = "undecided"

#: What the baseline/candidate values of a verdict are: the medians of the per-repeat values, or
#: their geometric means (where the change is a ratio of geometric means, the values shown are too).
CENTER_MEDIAN = "median"
CENTER_GEOMEAN = "geomean"

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

    outcome: str  # regressed | improved | unchanged | undecided
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
    # the quantities the change is about: geometric means where the ratio is one of geometric
    # means, else the medians (None in verdicts built before these fields: read the medians)
    center: str = CENTER_MEDIAN
    baseline_value: float | None = None
    candidate_value: float | None = None
    # paired rounds (`bigbench ab`) only
    rounds: int | None = None  # rounds that went into the interval (the look that decided it)
    # smallest change (in %) this evidence could have shown beyond the band: paired rounds, and
    # separate runs where the test gives an interval (None where it gives none)
    mde_pct: float | None = None

    @property
    def baseline_shown(self) -> float:
        """The baseline quantity the verdict is about (geometric mean or median)."""
        return self.baseline_median if self.baseline_value is None else self.baseline_value

    @property
    def candidate_shown(self) -> float:
        """The candidate quantity the verdict is about (geometric mean or median)."""
        return self.candidate_median if self.candidate_value is None else self.candidate_value

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
            level = f"{(1 - self.alpha) * 100:.6g}"
            parts.append(f"{level}% CI of ratio [{self.ratio_low:.4g}, {self.ratio_high:.4g}]")
        if self.rounds is not None:
            parts.append(f"{self.rounds} rounds")
            if self.mde_pct is not None and math.isfinite(self.mde_pct):
                parts.append(f"could detect >= {self.mde_pct:.3g}%")
        else:
            parts.append(f"n={self.baseline_n} vs {self.candidate_n}")
            # separate runs: said where it matters, on the verdicts the noise left open
            if (self.outcome == UNDECIDED and self.mde_pct is not None
                    and math.isfinite(self.mde_pct)):
                parts.append(f"could detect >= {self.mde_pct:.3g}%")
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
        ratio = safe_exp(diff)
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
        ratio_low=safe_exp(diff - half_width),
        ratio_high=safe_exp(diff + half_width),
        ratio=safe_exp(diff),
    )


def safe_exp(x: float) -> float:
    """exp(x), inf where it overflows: with 2 repeats at alpha 0.001 the t quantile is ~30, and a
    noisy pair of logs makes an interval edge like exp(800) (math.exp raises there)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def decide(
    baseline: MetricSamples,
    candidate: MetricSamples,
    *,
    higher_is_better: bool,
    threshold_pct: float,
    alpha: float = DEFAULT_ALPHA,
    gate_without_test: bool = True,
) -> Verdict:
    """Regressed, improved, unchanged or undecided.

    Regressed or improved: beyond the threshold AND beyond the noise. Unchanged: where the noise
    test gives an interval of the ratio (Welch, with repeats), only when that interval lies wholly
    inside the band [1 / (1 + t), 1 + t] -- no change as large as the threshold is left possible;
    an interval that reaches past the band is undecided (failing to reject "no change" is not
    evidence of no change: 3 noisy repeats a side once read as unchanged at -90%). Where the test
    gives no interval (Mann-Whitney on the steps of one repeat) or there is no test (steady
    metrics), a change that is not beyond the threshold and the noise is unchanged, as the method
    line says.

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
    elif test is not None and test.ratio_low is not None and test.ratio_high is not None:
        outcome = (UNCHANGED if _inside_band(test.ratio_low, test.ratio_high, threshold_pct)
                   else UNDECIDED)
    else:
        outcome = UNCHANGED
    mde_pct = None
    if test is not None and test.ratio_low is not None and test.ratio_high is not None:
        mde_pct = interval_detectable_change_pct(test.ratio_low, test.ratio_high,
                                                 threshold_pct=threshold_pct)
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
        center=CENTER_GEOMEAN if method == METHOD_REPEATS else CENTER_MEDIAN,
        baseline_value=(geometric_mean(baseline.per_repeat) if method == METHOD_REPEATS
                        else statistics.median(baseline.per_repeat)),
        candidate_value=(geometric_mean(candidate.per_repeat) if method == METHOD_REPEATS
                         else statistics.median(candidate.per_repeat)),
        mde_pct=mde_pct,
    )


def _inside_band(ratio_low: float, ratio_high: float, threshold_pct: float) -> bool:
    """The interval lies wholly inside [1 / (1 + t), 1 + t] (symmetric in logs, so step time and
    its reciprocal, throughput, decide alike whichever side is worse)."""
    upper_edge = 1 + threshold_pct / 100
    return 1 / upper_edge <= ratio_low and ratio_high <= upper_edge


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion `hits / n` (95% at the default z): what the
    detection benchmarks quote for alarm and detection rates; (0, 1) for no trials."""
    if n == 0:
        return (0.0, 1.0)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def geometric_mean(values: Sequence[float]) -> float:
    """The geometric mean of positive values (what a mean of logs is about)."""
    return safe_exp(statistics.fmean(math.log(v) for v in values))


def _all_positive(*groups: Sequence[float]) -> bool:
    return all(x > 0 for group in groups for x in group)


# -- paired rounds (`bigbench ab`) -------------------------------------------------------------
#
# Each round runs a cell once per side, close together in time, so whatever slows the box during a
# round (another job, a thermal state, a noisy neighbour) slows both sides. The per-round log ratio
# log(candidate / baseline) cancels that shared drift; the test is on the mean of those log ratios,
# i.e. on the ratio of the geometric means. A paired t interval is used, not a sign-rank test or a
# bootstrap: the per-test levels below are tiny (alpha split over the family and over the looks,
# ~1e-4 and less), which a rank test can only reach after ~15 rounds (its smallest p-value is
# 2/2^n) and a bootstrap cannot resolve at all; the t interval can, and its answer widens
# with outliers (they inflate the variance) rather than narrowing.
#
# A metric is decided when its interval of the ratio lies entirely beyond an edge of the threshold
# band [1 / (1 + t), 1 + t] (regressed or improved) or entirely inside it (unchanged: equivalence, as in
# the two one-sided tests, TOST); an interval that straddles an edge is undecided.
#
# False alarms: alpha (default 0.01) bounds the chance that a whole gate run -- every cell and
# metric, every look after every round -- shows any interval beyond the band when nothing
# changed. Bonferroni over the family of m cell x metric tests (it gives simultaneous intervals,
# which the interval-based decisions need; Holm only improves the rejections of point nulls), and
# alpha spent over the looks: when the number of rounds is capped, half at the last look and half
# evenly over the looks from MIN_PAIRED_ROUNDS before it (a t quantile at a tiny level with few
# degrees of freedom is huge, so the early looks only catch the clear cases and the budget's
# answer gets the most); uncapped, alpha * k0 / (k (k + 1)) at look k (which sums to alpha over
# all looks k >= k0, however many rounds a budget allows). Both are union bounds, valid whatever
# the correlation between cells, metrics and looks.

#: The first look at which paired rounds may decide anything: with 2 rounds the t interval has one
#: degree of freedom and at the levels used here is useless, so spending alpha on it is a waste.
MIN_PAIRED_ROUNDS = 3
METHOD_PAIRED = "paired t on per-round log ratios"


@dataclass(frozen=True, kw_only=True)
class PairedInterval:
    """The interval of a candidate/baseline ratio from paired per-round values."""

    rounds: int  # pairs that went into it
    ratio: float  # exp(mean log ratio): the ratio of the geometric means
    ratio_low: float  # 0 and inf when fewer than two pairs
    ratio_high: float
    level: float  # the two-sided error level of the interval
    p_value: float | None  # of "ratio = 1", for the record; decisions use the interval


def paired_log_ratio_interval(
    baseline: Sequence[float], candidate: Sequence[float], *, level: float,
    with_p_value: bool = True,
) -> PairedInterval:
    """The (1 - level) paired t interval of the ratio of geometric means of candidate/baseline.

    `baseline[i]` and `candidate[i]` were measured in the same round. Values must be positive.
    With one pair the interval is (0, inf); when every round gives the same ratio the interval is
    that point (the noise is zero, not unknown). `with_p_value=False` skips the p-value (None),
    the slow part, where only the interval is wanted.
    """
    if len(baseline) != len(candidate):
        raise ValueError(f"paired values need equal lengths, got {len(baseline)} and "
                         f"{len(candidate)}")
    if not baseline:
        raise ValueError("paired interval needs at least one pair")
    if min(baseline) <= 0 or min(candidate) <= 0:
        raise ValueError("log-ratio test needs positive values")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    logs = [math.log(c) - math.log(b) for b, c in zip(baseline, candidate)]
    n = len(logs)
    mean = math.fsum(logs) / n
    ratio = safe_exp(mean)
    if n < 2:
        return PairedInterval(rounds=n, ratio=ratio, ratio_low=0.0, ratio_high=math.inf,
                              level=level, p_value=None)
    # plain floats (two passes): statistics.stdev's exact fractions cost 50x, and this runs at
    # every look of every test of every simulated gate run in bench/compare_power.py
    spread = math.sqrt(math.fsum((x - mean) ** 2 for x in logs) / (n - 1))
    # below float resolution of the logs themselves: identical ratios, an exact answer
    if spread <= 1e-12 * max(1.0, abs(mean)):
        return PairedInterval(rounds=n, ratio=ratio, ratio_low=ratio, ratio_high=ratio,
                              level=level, p_value=1.0 if mean == 0 else 0.0)
    se = spread / math.sqrt(n)
    half_width = _t_quantile(level / 2, n - 1) * se
    p_value = None
    if with_p_value:
        from scipy.stats import t as student_t

        p_value = float(2 * student_t.sf(abs(mean) / se, n - 1))
    return PairedInterval(rounds=n, ratio=ratio, ratio_low=safe_exp(mean - half_width),
                          ratio_high=safe_exp(mean + half_width), level=level, p_value=p_value)


def look_level(alpha: float, look: int, *, family_size: int, max_rounds: int | None = None,
               last_look: int | None = None, first_look: int = MIN_PAIRED_ROUNDS) -> float:
    """The two-sided error level of one test at one look (0 where a look spends nothing).

    `look` is the number of rounds run so far. With `max_rounds`, half of alpha is kept for the
    last look (where a budget's detection is judged, with the most degrees of freedom) and half is
    spread evenly over the looks before it (early stops for clear answers); without, look k gets
    alpha * k0 / (k (k + 1)). `last_look`: the rounds ended there (a time budget ran out first):
    it gets what was kept for the last look (capped: alpha / 2; open-ended: all that the looks
    after it would have had, alpha * k0 / (k + 1), on top of its own), and no look follows it.
    Over the family of `family_size` tests and every look the levels sum to at most `alpha` (see
    the section comment above).
    """
    if family_size < 1:
        raise ValueError(f"family_size must be at least 1, got {family_size}")
    end = min(x for x in (max_rounds, last_look) if x is not None) if (
        max_rounds is not None or last_look is not None) else None
    if look < first_look or (end is not None and look > end):
        return 0.0
    if max_rounds is None:
        per_look = alpha * first_look / (look * (look + 1))
        if look == last_look:
            per_look += alpha * first_look / (look + 1)
    elif max_rounds == first_look:
        per_look = alpha
    elif look == end:
        per_look = alpha / 2
    else:
        per_look = alpha / 2 / (max_rounds - first_look)
    return per_look / family_size


def paired_look_interval(n: int, log_sum: float, log_square_sum: float, *, level: float,
                         ) -> tuple[float, float, float]:
    """(mean, low, high) of the mean log ratio from running sums, the paired t interval at
    `level`: what paired_log_ratio_interval gives, without the lists (one per look per test)."""
    mean = log_sum / n
    if n < 2:
        return mean, -math.inf, math.inf
    variance = max(0.0, (log_square_sum - n * mean * mean) / (n - 1))
    spread = math.sqrt(variance)
    if spread <= 1e-9 * max(1.0, abs(mean)):
        return mean, mean, mean
    half_width = _t_quantile(level / 2, n - 1) * spread / math.sqrt(n)
    return mean, mean - half_width, mean + half_width


@functools.lru_cache(maxsize=4096)
def _t_quantile(upper_tail: float, df: int) -> float:
    from scipy.stats import t as student_t

    return float(student_t.isf(upper_tail, df))


def band_outcome(ratio_low: float, ratio_high: float, *, threshold_pct: float,
                 higher_is_better: bool) -> str:
    """Where an interval of the ratio lies against the band [1 / (1 + t), 1 + t].

    Beyond the band on the worse side: regressed; on the better side: improved; entirely inside:
    unchanged; across an edge: undecided. The band is symmetric in logs, so a metric and its
    reciprocal (throughput and step time) decide alike: 5% slower is 1/1.05 of the throughput.
    """
    upper_edge = 1 + threshold_pct / 100
    lower_edge = 1 / upper_edge
    if ratio_low > upper_edge:
        return IMPROVED if higher_is_better else REGRESSED
    if ratio_high < lower_edge:
        return REGRESSED if higher_is_better else IMPROVED
    if lower_edge <= ratio_low and ratio_high <= upper_edge:
        return UNCHANGED
    return UNDECIDED


def detectable_change_pct(interval: PairedInterval, *, threshold_pct: float) -> float:
    """The smallest change, in %, these rounds could have decided as beyond the threshold.

    An observed mean log ratio of log(1 + t) + h (h: the interval's half-width in logs) puts the
    interval's lower edge exactly on the band's upper edge: a true change of that size is decided
    about half the time, a smaller one rarely. inf with fewer than two pairs or a zero level.
    """
    if interval.rounds < 2:
        return math.inf
    return interval_detectable_change_pct(interval.ratio_low, interval.ratio_high,
                                          threshold_pct=threshold_pct)


def interval_detectable_change_pct(ratio_low: float, ratio_high: float, *,
                                   threshold_pct: float) -> float:
    """The smallest change, in %, an interval of this width could have decided as beyond the
    threshold: the band edge plus the interval's half-width in logs (see detectable_change_pct).
    inf where the interval is unbounded."""
    if not math.isfinite(ratio_high) or ratio_low <= 0:
        return math.inf
    half_width = (math.log(ratio_high) - math.log(ratio_low)) / 2
    return (safe_exp(math.log1p(threshold_pct / 100) + half_width) - 1) * 100
