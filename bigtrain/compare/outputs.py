"""The files a gate leaves for CI: a Markdown summary appended to, and a JSON report.

`bigbench compare` and `bigbench ab` both write them, before anything reaches the terminal, so
what CI keeps never depends on the terminal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bigtrain.common.errors import BadInput


def write_gate_files(*, markdown_path: Path | None, markdown: Callable[[], str] | None,
                     json_path: Path | None, payload: Callable[[], Mapping[str, Any]]) -> None:
    """Append `markdown()` to `markdown_path` and write `payload()` as JSON to `json_path`, each
    where its path is given (`markdown` None: no Markdown to write). An unwritable path is
    BadInput naming the file."""
    try:
        if markdown_path is not None and markdown is not None:
            # Append: a CI step may already have written to $GITHUB_STEP_SUMMARY.
            with open(markdown_path, "a", encoding="utf-8") as fh:
                fh.write(markdown())
        if json_path is not None:
            text = json.dumps(payload(), indent=2, allow_nan=False) + "\n"
            json_path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot write {exc.filename}: {exc.strerror}") from None
