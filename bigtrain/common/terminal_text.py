"""Data printed to a terminal is shown as text, never obeyed as markup or control codes.

Reasons, run ids, paths, host and model names come from exceptions, files and the machine. Rich
would read `[/x]` in them as markup (and crash) or `[enforce fail at ...]` as a style (and drop
it); a terminal would obey an ANSI escape inside them. Everything bigtrain prints that holds such
data goes through `inert` (plain text) or `data_text` (a rich Text, never parsed as markup).
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls except tab and newline, DEL, C1 controls, and the Unicode bidi overrides/isolates
# that reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(value: object) -> str:
    """`str(value)` with every control character shown as a visible escape (ESC -> `\\x1b`);
    tabs and newlines are kept."""
    return _CONTROL.sub(_visible, str(value))


def one_line(value: object) -> str:
    """`inert(value)` on one line: newlines shown as ` | `, for a line per cell in a log."""
    return " | ".join(part.strip() for part in inert(value).strip().splitlines() if part.strip())


def data_text(value: object, style: str = "") -> Any:
    """A rich `Text` of `value`: printed exactly as its characters, with `style`, never parsed as
    markup or emoji codes."""
    from rich.text import Text

    return Text(inert(value), style=style)
