"""The subcommands of `bigbench`, one module each; `COMMANDS` lists what the group registers."""

from __future__ import annotations

import importlib

import click

_MODULES = ("sweep", "listing", "env", "report", "compare", "export", "calibrate")


def _load() -> list[click.Command]:
    commands = []
    for name in _MODULES:
        try:
            module = importlib.import_module(f"bigtrain.commands.{name}")
        except ModuleNotFoundError as exc:
            # A command still being built is simply absent; any other missing module is a bug.
            if exc.name == f"bigtrain.commands.{name}":
                continue
            raise
        commands.extend(module.COMMANDS)
    return commands


COMMANDS = _load()
