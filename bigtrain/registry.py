"""Small name -> factory registries, extendable by third-party packages.

Third parties register through entry points (groups `bigtrain.workloads` and
`bigtrain.optimizers`): the entry point names a callable that is called once with no arguments and
registers what it brings. `BIGTRAIN_PLUGINS` (comma-separated module names) is imported the same
way; tests use it to add fault-injection workloads in worker processes without touching the
product's registries.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")

PLUGINS_ENV = "BIGTRAIN_PLUGINS"
_plugins_loaded = False


class Registry(Generic[T]):
    """Named objects of one kind, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T, *, replace: bool = False) -> T:
        """Add `item` under `name`; refuses to shadow an existing name unless `replace`."""
        if name in self._items and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T | None:
        """The item named `name`, or None."""
        load_plugins()
        return self._items.get(name)

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        load_plugins()
        return list(self._items)

    def __iter__(self) -> Iterator[tuple[str, T]]:
        load_plugins()
        return iter(list(self._items.items()))


def load_plugins() -> None:
    """Import entry-point plugins and BIGTRAIN_PLUGINS modules, once per process."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for group in ("bigtrain.workloads", "bigtrain.optimizers"):
        for entry in entry_points(group=group):
            try:
                hook = entry.load()
                if callable(hook):
                    hook()
            except Exception as exc:  # a broken plugin must not take the product down
                warnings.warn(f"bigtrain plugin {entry.name!r} ({entry.value}) failed: {exc}")
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        importlib.import_module(module)
