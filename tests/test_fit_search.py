"""The search of `bigbench fit` on fake probe functions: doubling then bisection finds the boundary
within the probe bound, and a probe that fails for a reason other than memory stops it."""

from __future__ import annotations

import pytest

from bigtrain.common.errors import BadInput
from bigtrain.run.fit_search import (
    BROKE,
    DOES_NOT_FIT,
    FITS,
    STOP_BATCH_MAX,
    STOP_BOUNDARY,
    STOP_NONE_FIT,
    STOP_PROBE_FAILED,
    STOP_PROBE_LIMIT,
    FitBounds,
    Probe,
    conclude,
    next_batch,
    search,
)


def limit_probe(largest: int, tried: list[int] | None = None, broken: frozenset[int] = frozenset()):
    """A fake device on which batch sizes up to `largest` fit; `broken` ones raise an error."""
    def probe(batch: int) -> Probe:
        if tried is not None:
            tried.append(batch)
        if batch in broken:
            return Probe(batch, BROKE, "error: RuntimeError: boom")
        return Probe(batch, FITS if batch <= largest else DOES_NOT_FIT)

    return probe


@pytest.mark.parametrize("largest", [1, 2, 3, 5, 37, 64, 65, 100, 999, 1023])
def test_doubling_then_bisection_finds_the_exact_boundary(largest: int) -> None:
    bounds = FitBounds(batch_min=1, batch_max=4096, max_probes=30)
    tried: list[int] = []
    found = search(bounds, limit_probe(largest, tried))
    assert (found.max_batch_size, found.fail_batch_size, found.stop) == (largest, largest + 1,
                                                                         STOP_BOUNDARY)
    assert found.exact and found.probes == len(tried) == len(set(tried))  # nothing probed twice
    # doubling reaches the first failure in log2 steps, bisection closes it in log2 more
    doublings = largest.bit_length() + 1
    assert len(tried) <= doublings + max(0, (largest.bit_length() - 1))


def test_the_probe_sequence_is_doubling_then_bisection() -> None:
    tried: list[int] = []
    found = search(FitBounds(batch_min=4, batch_max=1000, max_probes=20), limit_probe(37, tried))
    assert tried == [4, 8, 16, 32, 64, 48, 40, 36, 38, 37]
    assert found.max_batch_size == 37 and found.fail_batch_size == 38


def test_doubling_is_clipped_to_batch_max_and_batch_max_fitting_ends_it() -> None:
    tried: list[int] = []
    found = search(FitBounds(batch_min=3, batch_max=20, max_probes=20), limit_probe(10**6, tried))
    assert tried == [3, 6, 12, 20]
    assert (found.max_batch_size, found.fail_batch_size, found.stop) == (20, None, STOP_BATCH_MAX)
    assert found.exact


def test_batch_min_not_fitting_means_nothing_fits_after_one_probe() -> None:
    tried: list[int] = []
    found = search(FitBounds(batch_min=8, batch_max=64), limit_probe(4, tried))
    assert tried == [8]
    assert (found.max_batch_size, found.fail_batch_size, found.stop) == (None, 8, STOP_NONE_FIT)
    assert not found.exact


def test_the_probe_bound_holds_and_the_answer_is_then_a_lower_bound() -> None:
    tried: list[int] = []
    found = search(FitBounds(batch_min=1, batch_max=10**6, max_probes=5), limit_probe(700, tried))
    assert len(tried) == 5 and tried == [1, 2, 4, 8, 16]
    assert (found.max_batch_size, found.stop) == (16, STOP_PROBE_LIMIT) and not found.exact
    inside = search(FitBounds(batch_min=1, batch_max=10**6, max_probes=12), limit_probe(700))
    assert inside.probes == 12 and inside.stop == STOP_PROBE_LIMIT
    assert 512 <= inside.max_batch_size <= 700 < inside.fail_batch_size <= 1024


def test_a_probe_that_errors_stops_the_search_instead_of_counting_as_out_of_memory() -> None:
    # The error at 32 says nothing about memory: neither "32 does not fit" (which would report
    # 31 or less as exact) nor "it fits" -- the search stops with the largest fit so far.
    tried: list[int] = []
    found = search(FitBounds(batch_min=1, batch_max=4096, max_probes=30),
                   limit_probe(100, tried, broken=frozenset({32})))
    assert tried == [1, 2, 4, 8, 16, 32]
    assert (found.max_batch_size, found.fail_batch_size, found.stop) == (16, None, STOP_PROBE_FAILED)
    assert not found.exact and "batch size 32 failed" in found.detail and "boom" in found.detail


def test_an_error_inside_the_bracket_also_stops_with_the_bracket_so_far() -> None:
    found = search(FitBounds(batch_min=1, batch_max=4096, max_probes=30),
                   limit_probe(100, broken=frozenset({96})))
    assert (found.max_batch_size, found.fail_batch_size, found.stop) == (64, 128, STOP_PROBE_FAILED)


def test_records_that_contradict_monotonic_memory_stop_the_search() -> None:
    bounds = FitBounds(batch_min=1, batch_max=64)
    probes = [Probe(1, FITS), Probe(2, FITS), Probe(4, DOES_NOT_FIT), Probe(8, FITS)]
    assert next_batch(bounds, probes) is None
    found = conclude(bounds, probes)
    assert found.stop == STOP_PROBE_FAILED and "did not grow with the batch" in found.detail


def test_next_batch_is_a_pure_function_of_the_probes_so_far() -> None:
    bounds = FitBounds(batch_min=1, batch_max=64, max_probes=10)
    probes = [Probe(1, FITS), Probe(2, FITS), Probe(4, FITS), Probe(8, DOES_NOT_FIT)]
    assert next_batch(bounds, probes) == next_batch(bounds, list(probes)) == 6
    with pytest.raises(ValueError, match="not over"):
        conclude(bounds, probes)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_min": 8, "batch_max": 4}, "--batch-min 8 is above --batch-max 4; valid: 1 <="),
    ({"batch_min": 0}, "--batch-min: 0 is out of range; valid: a whole number from 1"),
    ({"max_probes": 0}, "--max-probes: 0 is out of range; valid: a whole number from 1 to 64"),
    ({"batch_max": 2**31}, "--batch-max: 2147483648 is out of range"),
])
def test_bad_bounds_name_the_flag_and_the_valid_range(kwargs: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message.replace("(", r"\(")):
        FitBounds(**kwargs)
