"""Shell completion of option values: axes from their registries, presets from bench/presets/.

Click asks these callbacks when the shell completes (`_BIGBENCH_COMPLETE=bash_source bigbench`
prints the script to source). An axis flag takes a comma-separated list, so only the part after
the last comma is completed and the part before it is kept. Placeholders in a choice list
(`N > 0`, `cuda:N`) are descriptions, not values, and are never offered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from click.shell_completion import CompletionItem

Completer = Callable[[Any, Any, str], list[CompletionItem]]


def _is_value(choice: str) -> bool:
    return " " not in choice and not choice.endswith(":N")


def list_items(values: Sequence[str], incomplete: str) -> list[CompletionItem]:
    """Completions of the last element of a comma-separated list `incomplete` among `values`."""
    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head or incomplete.startswith(",") else ""
    taken = set(head.split(",")) if head else set()
    return [CompletionItem(prefix + value) for value in values
            if value.startswith(last) and value not in taken and _is_value(value)]


def axis_completer(axis: Any) -> Completer:
    """The completion callback of one axis flag (`--model`, `--optimizer`, ...)."""

    def complete(ctx: Any, param: Any, incomplete: str) -> list[CompletionItem]:
        try:
            values = axis.choice_list()
        except Exception:  # noqa: BLE001 - a broken plugin must not break the user's shell
            return []
        return list_items(values, incomplete)

    return complete


def complete_preset(ctx: Any, param: Any, incomplete: str) -> list[CompletionItem]:
    """Preset names in bench/presets/; a path (anything with a `/` or `.`) completes as a file."""
    if "/" in incomplete or incomplete.startswith("."):
        return [CompletionItem(incomplete, type="file")]
    from bigtrain.cells.spec import preset_names

    try:
        names = preset_names()
    except Exception:  # noqa: BLE001 - an unreadable presets folder: no completions, no trace
        return []
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]
