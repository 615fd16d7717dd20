"""Change points of one series: where its level shifted, by how much (with an interval), and
whether that is a regression or an improvement for the metric's direction. Pure functions.

Method. Each point is a run's value `v_i` with its samples (per-step times, or per-repeat
values). The detector works on `x_i = log v_i` (a shift is a ratio, whatever the unit), scaled
by the noise `sigma`: the larger of
- the run-to-run noise, a robust spread of consecutive differences (1.4826 * MAD / sqrt 2), so
  one shift does not inflate it the way a plain standard deviation would, and
- the within-run noise, the standard error of a run's median from its own samples' spread
  (1.2533 * IQR/1.349 / sqrt n on log samples): a series of few runs cannot look quieter than
  its steps are;
with a floor of `MIN_SIGMA` for steady metrics (memory) whose values repeat exactly.
Segments come from ruptures' PELT with the l2 cost (an exact search for shifts of the mean) and
a penalty of `penalty_per_log_n * log n`; each boundary found is then kept only when the two
segments beside it differ beyond the noise: a Welch-style interval of the difference of their
mean log values (each segment's variance floored at sigma^2) that excludes zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from bigtrain.common.errors import BadInput

REGRESSION = "regression"
IMPROVEMENT = "improvement"
#: A series shorter than this many points per side of a shift gets "not enough history".
DEFAULT_MIN_SEGMENT = 3
#: PELT's penalty is this times log(n) on the noise-scaled series (calibrated by
#: bench/history_power.py: false alarms on unshifted real series stay rare).
DEFAULT_PENALTY_PER_LOG_N = 3.0
#: Two-sided level of a change point's interval (and of the test that keeps it).
DEFAULT_ALPHA = 0.01
#: Noise floor on the log scale (0.05%): identical memory figures are not infinitely precise.
MIN_SIGMA = 5e-4
NOT_ENOUGH_HISTORY = "not enough history"


@dataclass(frozen=True, kw_only=True)
class ChangePoint:
    """A shift between point `index - 1` and point `index` (the first point at the new level)."""

    index: int
    #: The change in percent of the level before (positive: the value went up), and its interval.
    change_pct: float
    low_pct: float
    high_pct: float
    verdict: str  # REGRESSION or IMPROVEMENT, by the metric's direction
    points_before: int
    points_after: int

    @property
    def worse_pct(self) -> float:
        """How much worse, in percent (negative for an improvement), whatever the direction."""
        return abs(self.change_pct) if self.verdict == REGRESSION else -abs(self.change_pct)


@dataclass(frozen=True, kw_only=True)
class Detection:
    """The outcome of looking for change points in one series."""

    change_points: tuple[ChangePoint, ...]
    #: The noise scale the detector used, in percent (sigma on the log scale x 100).
    noise_pct: float | None
    #: None when detection ran; NOT_ENOUGH_HISTORY (with the counts) when it could not.
    not_enough: str | None = None


def _log_median_se(samples: Sequence[float]) -> float | None:
    logs = np.log(np.asarray([s for s in samples if s > 0], dtype=float))
    if logs.size < 5:
        return None
    q75, q25 = np.percentile(logs, [75, 25])
    return 1.2533 * (q75 - q25) / 1.349 / math.sqrt(logs.size)


def noise_sigma(log_values: np.ndarray, samples: Sequence[Sequence[float]]) -> float:
    """The noise scale of a series on the log scale (see the module docstring)."""
    diffs = np.diff(log_values)
    between = 0.0
    if diffs.size >= 2:
        between = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2)
    within_each = [se for se in (_log_median_se(s) for s in samples) if se is not None]
    within = float(np.median(within_each)) if within_each else 0.0
    return max(between, within, MIN_SIGMA)


def _segments_shift(left: np.ndarray, right: np.ndarray, sigma: float,
                    alpha: float) -> tuple[float, float, float]:
    """(difference of mean log values, low, high) at level 1 - alpha."""
    var_left = max(float(np.var(left, ddof=1)) if left.size > 1 else 0.0, sigma ** 2)
    var_right = max(float(np.var(right, ddof=1)) if right.size > 1 else 0.0, sigma ** 2)
    a, b = var_left / left.size, var_right / right.size
    se = math.sqrt(a + b)
    # Welch-Satterthwaite degrees of freedom, at least 1.
    df = max(1.0, (a + b) ** 2 / ((a ** 2 / max(left.size - 1, 1)) + (b ** 2 / max(right.size - 1, 1))))
    t = float(scipy_stats.t.ppf(1 - alpha / 2, df))
    shift = float(right.mean() - left.mean())
    return shift, shift - t * se, shift + t * se


def _pct(log_ratio: float) -> float:
    return (math.exp(max(min(log_ratio, 700.0), -700.0)) - 1.0) * 100.0


def detect(values: Sequence[float], samples: Sequence[Sequence[float]] = (), *,
           higher_is_better: bool, min_segment: int = DEFAULT_MIN_SEGMENT,
           penalty_per_log_n: float = DEFAULT_PENALTY_PER_LOG_N,
           alpha: float = DEFAULT_ALPHA) -> Detection:
    """The change points of one series of positive values, oldest first.

    `samples[i]` is point i's spread (per-step values or per-repeat values; may be empty).
    Fewer than `2 * min_segment` points: no verdict, `not_enough` says why.
    """
    try:
        import ruptures
    except ImportError:
        raise BadInput("bigbench history needs the `ruptures` package: "
                       "pip install 'bigtrain[history]'") from None
    if min_segment < 2:
        raise BadInput(f"--min-segment {min_segment}: must be at least 2")
    n = len(values)
    needed = 2 * min_segment
    if n < needed:
        return Detection(change_points=(), noise_pct=None,
                         not_enough=f"{NOT_ENOUGH_HISTORY}: {n} point(s), detection needs "
                                    f"{needed} ({min_segment} each side of a shift)")
    x = np.log(np.asarray(values, dtype=float))
    padded = list(samples) + [()] * (n - len(samples))
    sigma = noise_sigma(x, padded)
    scaled = ((x - x.mean()) / sigma).reshape(-1, 1)
    algo = ruptures.Pelt(model="l2", min_size=min_segment, jump=1).fit(scaled)
    bounds = [b for b in algo.predict(pen=penalty_per_log_n * math.log(n)) if b < n]
    found: list[ChangePoint] = []
    edges = [0, *bounds, n]
    for position, index in enumerate(bounds, start=1):
        left, right = x[edges[position - 1]:index], x[index:edges[position + 1]]
        shift, low, high = _segments_shift(left, right, sigma, alpha)
        if low <= 0.0 <= high:
            continue  # the segments do not differ beyond the noise
        went_up = shift > 0
        verdict = IMPROVEMENT if went_up == higher_is_better else REGRESSION
        found.append(ChangePoint(index=index, change_pct=_pct(shift), low_pct=_pct(low),
                                 high_pct=_pct(high), verdict=verdict,
                                 points_before=int(left.size), points_after=int(right.size)))
    return Detection(change_points=tuple(found), noise_pct=sigma * 100.0)
