"""The subcommands of `bigbench`, one module each; `COMMANDS` lists what the group registers.

The modules import only click at the top; each command imports torch or pandas inside its body.
"""

from __future__ import annotations

from bigtrain.commands import (calibrate, compare, converge, env, export, fit, history, listing,
                               profile_diff, report, sweep)
from bigtrain.commands import profile  # issue 24: profiled cells

COMMANDS = [
    command
    for module in (sweep, converge, fit, listing, env, calibrate, report, compare, export, history,
                   profile_diff, profile)
    for command in module.COMMANDS
]
