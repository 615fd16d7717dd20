"""The two sides of an A/B run: each a Python interpreter plus environment variables."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bigtrain.common.errors import BadInput

BASELINE = "baseline"
CANDIDATE = "candidate"
SIDES = (BASELINE, CANDIDATE)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, kw_only=True)
class Side:
    """One side: the interpreter that runs its cells and the variables added to its environment."""

    name: str
    python: str
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}, got {self.name!r}")

    def describe(self) -> dict[str, object]:
        """What the side's manifest records about it."""
        return {"side": self.name, "python": self.python, "env": dict(self.env)}


def parse_env_pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    """`K=V` strings from a repeated flag as a dict; BadInput naming the flag and the bad value."""
    env: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name):
            raise BadInput(f"{flag}: {value!r} is not NAME=VALUE (a name of letters, digits and "
                           f"_, not starting with a digit, then `=`, then the value)")
        env[name] = text
    return env


def check_python(python: str | None, flag: str) -> str:
    """The interpreter to run a side with: `python` checked to be an executable file, or this
    process's own interpreter when None. BadInput naming the flag otherwise."""
    if python is None:
        return sys.executable
    path = Path(python)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BadInput(f"{flag}: {python!r} is not an executable file; give the path of a Python "
                       f"interpreter (e.g. .venv/bin/python) that has bigtrain installed")
    return str(path.absolute())
