"""Limits of `bigbench converge --tune-lr`, free of torch so the command line's help reads them."""

#: The most trials one search may plan (a typo guard: 40 half-decades is 20 decades of lr).
MAX_TRIALS = 40
