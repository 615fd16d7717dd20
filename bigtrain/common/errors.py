"""Error types shared by every part of bigtrain.

`BadInput` is what the command line turns into exit code 2: the message must name where the bad
value came from (a file and line, or a flag), the bad value, and the valid choices.
"""

from __future__ import annotations

from collections.abc import Iterable


class BadInput(ValueError):
    """User input (a flag, a preset, a results file) that cannot be used as given."""


def unknown_choice(what: str, value: object, choices: Iterable[object], where: str = "") -> BadInput:
    """Build the standard "unknown X" error listing the valid choices."""
    prefix = f"{where}: " if where else ""
    listed = ", ".join(str(c) for c in choices)
    return BadInput(f"{prefix}unknown {what} {value!r}; valid choices: {listed}")


class CellSkipped(Exception):
    """A cell that cannot be measured here, found out only when building it (a CUDA graph that
    cannot be captured, a framework that sees no GPU); the worker records it as `skipped` with
    this message as the reason."""
