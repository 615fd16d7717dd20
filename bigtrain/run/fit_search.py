"""The search of `bigbench fit`: the largest batch size that trains, by doubling then bisection.

Pure Python, and pure functions of what the probes so far found: `next_batch(bounds, probes)`
says which batch size to try next (None: the search is over) and `conclude(bounds, probes)` what
it found. The driver (`bigtrain.run.fit`) runs each probe as a recorded cell; a resumed run feeds
the recorded outcomes back in and the search takes the same path.

The search assumes memory grows with the batch: a batch that fits means every smaller one does,
one that does not fit means no larger one does. So it never probes outside the bracket
(largest known fit, smallest known failure). A probe that failed for another reason (an error, a
timeout, a crash: `BROKE`) says nothing about memory, so the search stops there rather than guess:
the largest batch that fitted so far is reported as a lower bound, with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bigtrain.common.errors import BadInput

#: A probe's outcome: it trained within the memory; it ran out (or over the budget); it failed
#: for a reason that says nothing about memory.
FITS, DOES_NOT_FIT, BROKE = "fits", "does_not_fit", "broke"
OUTCOMES = (FITS, DOES_NOT_FIT, BROKE)

#: Why a search ended (the max record's `fit_stop`).
STOP_BOUNDARY = "boundary"        # the largest fit and the smallest failure are one apart
STOP_BATCH_MAX = "batch_max"      # --batch-max itself fits: the answer is at least that
STOP_NONE_FIT = "none_fit"        # --batch-min already does not fit
STOP_PROBE_LIMIT = "probe_limit"  # --max-probes spent inside the bracket: a lower bound
STOP_PROBE_FAILED = "probe_failed"  # a probe broke (error, timeout, crash): a lower bound

DEFAULT_BATCH_MIN = 1
DEFAULT_BATCH_MAX = 4096
DEFAULT_MAX_PROBES = 12
#: The most probes a search may be given: doubling over 2**30 and bisecting back is 61.
MAX_PROBES_LIMIT = 64
BATCH_SIZE_LIMIT = 2**30


@dataclass(frozen=True, kw_only=True)
class FitBounds:
    """Where the search looks: batch sizes in [batch_min, batch_max], at most max_probes probes."""

    batch_min: int = DEFAULT_BATCH_MIN
    batch_max: int = DEFAULT_BATCH_MAX
    max_probes: int = DEFAULT_MAX_PROBES

    def __post_init__(self) -> None:
        for name, limit in (("batch_min", BATCH_SIZE_LIMIT), ("batch_max", BATCH_SIZE_LIMIT),
                            ("max_probes", MAX_PROBES_LIMIT)):
            value = getattr(self, name)
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise BadInput(f"{flag}: {value!r} is out of range; valid: a whole number "
                               f"from 1 to {limit:,}")
        if self.batch_min > self.batch_max:
            raise BadInput(f"--batch-min {self.batch_min} is above --batch-max {self.batch_max}; "
                           f"valid: 1 <= --batch-min <= --batch-max <= {BATCH_SIZE_LIMIT:,}")

    def to_json(self) -> dict[str, int]:
        return {"batch_min": self.batch_min, "batch_max": self.batch_max,
                "max_probes": self.max_probes}


@dataclass(frozen=True)
class Probe:
    """One probe: the batch size tried and its outcome (one of OUTCOMES), with why."""

    batch_size: int
    outcome: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"probe outcome {self.outcome!r}; valid: {', '.join(OUTCOMES)}")


@dataclass(frozen=True, kw_only=True)
class FitConclusion:
    """What a search found: the largest batch that fitted (None: none did), the smallest that did
    not (None: none failed), why it stopped, and whether the answer is exact."""

    max_batch_size: int | None
    fail_batch_size: int | None
    stop: str
    probes: int
    detail: str = ""

    @property
    def exact(self) -> bool:
        """True when the largest batch that fits is known, not only a lower bound: the next one
        up failed, or it is --batch-max (the answer within the bounds asked)."""
        return self.stop in (STOP_BOUNDARY, STOP_BATCH_MAX)


def _bracket(probes: Sequence[Probe]) -> tuple[int | None, int | None]:
    fits = [p.batch_size for p in probes if p.outcome == FITS]
    fails = [p.batch_size for p in probes if p.outcome == DOES_NOT_FIT]
    return (max(fits) if fits else None), (min(fails) if fails else None)


def _stop(bounds: FitBounds, probes: Sequence[Probe]) -> tuple[str, str] | None:
    """(why, detail) when the search is over, None while it goes on."""
    broke = next((p for p in probes if p.outcome == BROKE), None)
    if broke is not None:
        return STOP_PROBE_FAILED, f"the probe at batch size {broke.batch_size} failed: {broke.detail}"
    fit, fail = _bracket(probes)
    if fit is not None and fail is not None and fit >= fail:
        # Not monotonic (a resumed run's records, a flaky peak): trust neither side any further.
        return STOP_PROBE_FAILED, (f"batch size {fit} fitted but {fail} did not: memory did not "
                                   f"grow with the batch, so the search stops")
    if fail is not None and fail <= bounds.batch_min:
        return STOP_NONE_FIT, f"batch size {bounds.batch_min} (--batch-min) does not fit"
    if fit is not None and fit >= bounds.batch_max and fail is None:
        return STOP_BATCH_MAX, f"batch size {bounds.batch_max} (--batch-max) fits"
    if fit is not None and fail is not None and fail - fit <= 1:
        return STOP_BOUNDARY, f"{fit} fits, {fail} does not"
    if len(probes) >= bounds.max_probes:
        return STOP_PROBE_LIMIT, (f"{len(probes)} probes (--max-probes) spent: {fit or 'none'} "
                                  f"fits, {fail if fail is not None else 'nothing'} failed")
    return None


def next_batch(bounds: FitBounds, probes: Sequence[Probe]) -> int | None:
    """The batch size to probe next, or None when the search is over.

    First --batch-min; while everything fits, double (the last step clipped to --batch-max);
    after the first failure, bisect between the largest fit and the smallest failure."""
    if _stop(bounds, probes) is not None:
        return None
    if not probes:
        return bounds.batch_min
    fit, fail = _bracket(probes)
    if fit is None:  # only a first probe that did not fit gets here, and _stop ends that
        return None
    if fail is None:
        return min(fit * 2, bounds.batch_max)
    return (fit + fail) // 2


def conclude(bounds: FitBounds, probes: Sequence[Probe]) -> FitConclusion:
    """What the probes found; the search must be over (`next_batch` None)."""
    stop = _stop(bounds, probes)
    if stop is None:
        raise ValueError("the search is not over: probe next_batch() first")
    fit, fail = _bracket(probes)
    why, detail = stop
    return FitConclusion(max_batch_size=fit, fail_batch_size=fail, stop=why,
                         probes=len(probes), detail=detail)


def search(bounds: FitBounds, probe) -> FitConclusion:  # noqa: ANN001 - batch -> Probe
    """Run a whole search with `probe(batch_size) -> Probe` (tests; the driver interleaves many
    searches over an executor with `next_batch` instead)."""
    probes: list[Probe] = []
    while (batch := next_batch(bounds, probes)) is not None:
        probes.append(probe(batch))
    return conclude(bounds, probes)
