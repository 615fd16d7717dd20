"""Exit codes of the `bigbench` command line, defined once for every command.

| code | meaning |
| --- | --- |
| 0 | success: the gate passed (every cell decided unchanged or better) |
| 1 | a regression (compare, ab) or cells that failed (sweep) |
| 2 | bad usage or bad input; also `--require-quiet refuse` on a busy machine |
| 3 | `ab` (paired rounds): some cell stayed undecided and `--undecided fail` (the default) |
| 130 | interrupted (Ctrl-C), the shell's convention for SIGINT |

Undecided has its own code, apart from 1, so a CI job can tell "it got slower" from "this box
could not tell" (retry on a quieter runner, or give more budget) without parsing output.
"""

from __future__ import annotations

EXIT_OK = 0
#: compare: something regressed or failed; sweep: some cells failed.
EXIT_FAILED = 1
EXIT_REGRESSION = EXIT_FAILED
#: Bad usage or unreadable input (click's own usage errors exit 2 too).
EXIT_USAGE = 2
EXIT_BAD_INPUT = EXIT_USAGE
#: `--require-quiet refuse` (or `wait` past its bound) found the machine busy: not run, as for
#: bad input: nothing was measured.
EXIT_BUSY = EXIT_USAGE
#: Paired rounds ended with a cell undecided (no regression found, none ruled out) under the
#: default `--undecided fail`.
EXIT_UNDECIDED = 3
EXIT_INTERRUPTED = 130
