"""Exit codes of the `bigbench` command line, defined once for every command.

0 success; 1 a regression (compare) or cells that failed (sweep); 2 bad usage or bad input;
130 interrupted (Ctrl-C), the shell's convention for SIGINT.
"""

from __future__ import annotations

EXIT_OK = 0
#: compare: something regressed or failed; sweep: some cells failed.
EXIT_FAILED = 1
EXIT_REGRESSION = EXIT_FAILED
#: Bad usage or unreadable input (click's own usage errors exit 2 too).
EXIT_USAGE = 2
EXIT_BAD_INPUT = EXIT_USAGE
EXIT_INTERRUPTED = 130
