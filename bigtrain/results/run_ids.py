"""Run ids: the one rule for a name that becomes a folder (`results/<run_id>`, `reports/<run_id>`).

A run id is built into paths, so it must be exactly one safe path component: CI systems build run
ids from branch names (`feature/x`), and a hand-edited manifest can say anything. Every place that
builds a path from a run id — a flag, a manifest, a folder name — checks it here first.
"""

from __future__ import annotations

import re
import socket

from bigtrain.common.errors import BadInput

#: Longest run id: two of them joined (`<a>-vs-<b>-and-N-more`) still fit a 255-byte file name.
RUN_ID_MAX_CHARS = 100

#: Which characters a run id may hold, in words, for error messages and the docs.
RUN_ID_RULE = (f"1 to {RUN_ID_MAX_CHARS} characters from A-Z a-z 0-9 . _ -, starting with a "
               "letter or digit (one folder name: no '/', no spaces, not '.' or '..')")

_RUN_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{RUN_ID_MAX_CHARS - 1}}}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_id_problem(value: object) -> str | None:
    """Why `value` is not a valid run id, or None when it is one."""
    if not isinstance(value, str):
        return f"a run id is text, not {type(value).__name__}"
    if not value:
        return "the run id is empty"
    if len(value) > RUN_ID_MAX_CHARS:
        return f"the run id is {len(value)} characters long"
    if _RUN_ID.fullmatch(value) is None:
        return "the run id is not one safe folder name"
    return None


def check_run_id(value: object, where: str) -> str:
    """Return `value` if it is a valid run id; else BadInput naming `where` (a flag, or a
    file:field), the bad value and the rule."""
    problem = run_id_problem(value)
    if problem is None:
        return value  # type: ignore[return-value]  # run_id_problem checked it is a str
    shown = repr(value) if not isinstance(value, str) or len(value) <= 60 else repr(value[:60]) + "..."
    hint = ""
    if isinstance(value, str) and value:
        suggestion = safe_run_id(value)
        if suggestion != value:
            hint = f" (e.g. {suggestion!r})"
    raise BadInput(f"{where}: bad run id {shown}: {problem}; a run id is {RUN_ID_RULE}{hint}")


def safe_run_id(text: str, fallback: str = "run") -> str:
    """`text` made into a valid run id: unsafe runs of characters become '-', cut to length.

    Used for run ids bigtrain builds itself (from the host name) and as the suggestion in errors.
    """
    cleaned = _UNSAFE.sub("-", text).lstrip("._-")[:RUN_ID_MAX_CHARS].rstrip("-")
    return cleaned if cleaned and _RUN_ID.fullmatch(cleaned) else fallback


def host_for_run_id() -> str:
    """This machine's short host name, made safe for a run id (any host name can be set)."""
    return safe_run_id(socket.gethostname().split(".")[0], fallback="host")
