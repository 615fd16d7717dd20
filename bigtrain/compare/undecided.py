"""What an undecided cell does to a gate's exit code (`--undecided fail|pass`).

An `undecided` cell is one whose interval still reaches past the threshold band: the rounds or
repeats neither show a change nor rule one out. Every gate (`bigbench ab`, `bigbench compare`
with and without `--paired`) reads this one policy, so a CI job cannot go green on the same
evidence through one command and red through another.
"""

from __future__ import annotations

import math
from typing import Any

#: `--undecided`: what an undecided cell does to the exit code.
UNDECIDED_FAIL = "fail"
UNDECIDED_PASS = "pass"
UNDECIDED_POLICIES = (UNDECIDED_FAIL, UNDECIDED_PASS)
#: Fail closed: an undecided cell is one whose interval still reaches past the band, so the run
#: did not rule out a regression as large as its smallest detectable change (issue 30: a 15%
#: slower Adam step went green with every cell undecided). A gate that cannot vouch says so.
DEFAULT_UNDECIDED = UNDECIDED_FAIL


def gate_exit_code(comparison: Any, base_code: int, *, undecided: str = DEFAULT_UNDECIDED) -> int:
    """The exit code of a gate under the `--undecided` policy.

    `base_code` is the code without the policy (0 passed, 1 regressed or failed, 130
    interrupted): a regression or an interrupt wins; otherwise an undecided cell gives
    EXIT_UNDECIDED under `fail`, and leaves the pass under `pass` (where the output warns).
    """
    from bigtrain.common.exit_codes import EXIT_OK, EXIT_UNDECIDED

    if undecided not in UNDECIDED_POLICIES:
        raise ValueError(f"undecided policy {undecided!r} is not one of {UNDECIDED_POLICIES}")
    if base_code != EXIT_OK or comparison is None or comparison.all_decided:
        return base_code
    return EXIT_UNDECIDED if undecided == UNDECIDED_FAIL else EXIT_OK


def undecided_lines(result: Any, undecided: str) -> list[str]:
    """What the undecided cells mean for the gate, said once at the end: nothing when every
    cell is decided; else the policy, the exit code, and the largest change that could have gone
    unseen (the worst cell's smallest detectable change)."""
    from bigtrain.common.exit_codes import EXIT_UNDECIDED

    cells = [c for c in result.sorted_cells() if not c.decided]
    if not cells:
        return []
    worst = [m.verdict.mde_pct for c in cells for m in c.metrics if m.verdict.mde_pct is not None]
    unseen = ("no bound: too few rounds" if not worst or not all(map(math.isfinite, worst))
              else f"up to {max(worst):.3g}%")
    if not getattr(result, "paired", True):
        # separate runs: the interval is as wide as the spread between repeats
        unseen = unseen.replace("too few rounds", "the repeats are too noisy to bound it")
        remedy = "measure more --repeats, on a quieter machine, or use a wider --threshold"
    else:
        remedy = "give more --budget-s/--rounds, a quieter machine, or a wider --threshold"
    if undecided == "fail":
        return [f"gate FAILED (exit {EXIT_UNDECIDED}): {len(cells)} cell(s) undecided and "
                f"--undecided fail: a regression this run could not see ({unseen}) is not ruled "
                f"out; {remedy}"]
    return [f"warning: {len(cells)} cell(s) undecided, passed only because --undecided pass: "
            f"a regression this run could not see ({unseen}) would have passed too"]
