"""The files a gate leaves for CI: a Markdown summary appended to, and a JSON report.

`bigbench compare` and `bigbench ab` both write them, before anything reaches the terminal, so
what CI keeps never depends on the terminal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bigtrain.results.output_paths import checked_output, write_output


def write_gate_files(*, markdown_path: Path | None, markdown: Callable[[], str] | None,
                     json_path: Path | None, payload: Callable[[], Mapping[str, Any]]) -> None:
    """Append `markdown()` to `markdown_path` and write `payload()` as JSON to `json_path`, each
    where its path is given (`markdown` None: no Markdown to write). An unwritable path, or one
    that resolves onto a run folder's own files (`bigtrain.results.output_paths`), is BadInput
    naming the file; both paths are checked before either is written."""
    if markdown_path is not None and markdown is not None:
        checked_output(markdown_path, what="--markdown")
    if json_path is not None:
        checked_output(json_path, what="--json")
    if markdown_path is not None and markdown is not None:
        # Append: a CI step may already have written to $GITHUB_STEP_SUMMARY.
        write_output(markdown_path, markdown(), what="--markdown", append=True)
    if json_path is not None:
        text = json.dumps(payload(), indent=2, allow_nan=False) + "\n"
        write_output(json_path, text, what="--json")
