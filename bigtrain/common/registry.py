"""Small name -> factory registries, extendable by third-party packages.

Third parties register through entry points (groups `bigtrain.workloads` and
`bigtrain.optimizers`): the entry point names a callable that is called once with no arguments and
registers what it brings. `BIGTRAIN_PLUGINS` (comma-separated module names) is imported the same
way; tests use it to add fault-injection workloads in worker processes without touching the
product's registries.

One rule for both kinds: a plugin that cannot be imported or whose hook raises is bad input
(`PluginError`, exit 2), naming the plugin, where it came from and its error. Running on with the
plugin silently missing would only move the failure to a confusing "unknown model" later, or to a
sweep that quietly lacks what the user asked for. Every broken plugin is named at once, and the
error is raised again on every later lookup in the process, so no code path sees a half-loaded
registry.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from bigtrain.common.errors import BadInput

T = TypeVar("T")

PLUGINS_ENV = "BIGTRAIN_PLUGINS"
PLUGIN_GROUPS = ("bigtrain.workloads", "bigtrain.optimizers")
_plugins_loaded = False
#: The failure of the one plugin load this process made, raised again on every later lookup.
_plugin_error: PluginError | None = None


class PluginError(BadInput):
    """One or more plugins failed to import or register; the message names each and its error."""


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
    """Import entry-point plugins and BIGTRAIN_PLUGINS modules, once per process.

    Raises PluginError (bad input, exit 2) naming every plugin that failed and its error; the
    same error is raised again by every later call, so a broken plugin cannot be half-ignored.
    """
    global _plugins_loaded, _plugin_error
    if _plugins_loaded:
        if _plugin_error is not None:
            raise _plugin_error
        return
    _plugins_loaded = True  # set first: a plugin's own registry lookups must not recurse
    _plugin_error = None
    failures: list[str] = []
    for group in PLUGIN_GROUPS:
        for entry in entry_points(group=group):
            failure = _load_entry_point(entry, group)
            if failure:
                failures.append(failure)
    for module in env_plugin_modules():
        failure = _import_env_plugin(module)
        if failure:
            failures.append(failure)
    if failures:
        _plugin_error = PluginError("; ".join(failures))
        raise _plugin_error


def env_plugin_modules() -> list[str]:
    """The module names listed in BIGTRAIN_PLUGINS (comma-separated; blanks ignored)."""
    return [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_entry_point(entry: EntryPoint, group: str) -> str | None:
    """Load and call one entry-point hook; a sentence naming it and its error if that fails."""
    try:
        hook = entry.load()
        if callable(hook):
            hook()
    except (Exception, SystemExit) as exc:  # a plugin calling sys.exit is broken too
        package = getattr(getattr(entry, "dist", None), "name", None)
        remedy = f"fix or uninstall the package {package!r}" if package else "fix or uninstall it"
        return (f"plugin {entry.name!r} (entry point {entry.value} in group {group}) failed to "
                f"load: {_error_text(exc)}; {remedy}")
    return None


def _import_env_plugin(module: str) -> str | None:
    """Import one BIGTRAIN_PLUGINS module; a sentence naming it and its error if that fails."""
    try:
        importlib.import_module(module)
    except (Exception, SystemExit) as exc:
        return (f"plugin {module!r} (from {PLUGINS_ENV}) failed to load: {_error_text(exc)}; "
                f"fix it or remove it from {PLUGINS_ENV}")
    return None
